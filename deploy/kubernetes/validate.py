#!/usr/bin/env python3
"""Renders every kustomization under deploy/kubernetes and validates each resource strictly
against the Kubernetes schemas (the kubernetes-validate package, offline).

The renderer implements only the kustomize features these files use -- resources, namespace,
images, labels (with includeSelectors) and strategic-merge patches of mappings -- and refuses any
other kustomization field, so a file it cannot render fails instead of passing unchecked.
Usage: validate.py [KUBERNETES_VERSION] [ROOT]
"""
import copy
import pathlib
import sys

import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parent
SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "images", "patches", "labels"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}


def merge(base, patch):
    """Strategic merge of mappings; lists and scalars in the patch replace."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(patch)


def pod_spec(doc):
    spec = doc.get("spec", {})
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return spec.get("template", {}).get("spec")
    return None


def render(directory):
    kfile = directory / "kustomization.yaml"
    k = yaml.safe_load(kfile.read_text())
    unknown = set(k) - SUPPORTED
    if unknown:
        raise SystemExit(f"{kfile}: unsupported kustomization fields {sorted(unknown)}")
    docs = []
    for res in k.get("resources", []):
        path = directory / res
        if path.is_dir():
            docs += render(path)
        else:
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    for block in k.get("labels", []):
        for doc in docs:
            doc.setdefault("metadata", {}).setdefault("labels", {}).update(block["pairs"])
            if not block.get("includeSelectors"):
                continue
            spec = doc.get("spec", {})
            if doc["kind"] == "Service":
                spec.setdefault("selector", {}).update(block["pairs"])
            elif "selector" in spec and doc["kind"] != "Job":
                spec["selector"].setdefault("matchLabels", {}).update(block["pairs"])
            if "template" in spec:
                spec["template"].setdefault("metadata", {}).setdefault("labels", {}).update(block["pairs"])
    for patch in k.get("patches", []):
        p = yaml.safe_load((directory / patch["path"]).read_text())
        targets = [d for d in docs if d["kind"] == p["kind"] and d["metadata"]["name"] == p["metadata"]["name"]]
        if len(targets) != 1:
            raise SystemExit(f"{directory}: patch {patch['path']} matches {len(targets)} resources")
        docs[docs.index(targets[0])] = merge(targets[0], p)
    for image in k.get("images", []):
        for doc in docs:
            spec = pod_spec(doc)
            for c in (spec or {}).get("containers", []):
                if c["image"].split(":")[0] == image["name"]:
                    c["image"] = f"{image.get('newName', image['name'])}:{image.get('newTag', 'latest')}"
    if "namespace" in k:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = k["namespace"]
    return docs


def main():
    version = sys.argv[1] if len(sys.argv) > 1 else "1.33.0"
    root = pathlib.Path(sys.argv[2]).resolve() if len(sys.argv) > 2 else ROOT
    failures = 0
    checked = 0
    for kfile in sorted(root.rglob("kustomization.yaml")):
        directory = kfile.parent
        for doc in render(directory):
            name = f"{doc['kind']}/{doc['metadata']['name']} ({directory.relative_to(root)})"
            try:
                kubernetes_validate.validate(doc, version, strict=True)
                checked += 1
                print(f"ok {name}")
            except kubernetes_validate.ValidationError as e:
                failures += 1
                print(f"FAILED {name}: {e.message} at {'.'.join(str(p) for p in e.path)}")
    print(f"{checked} passed, {failures} failed")
    sys.exit(1 if failures or not checked else 0)


if __name__ == "__main__":
    main()
