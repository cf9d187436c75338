#!/usr/bin/env python3
"""Checks from Python with stubs generated from the service's proto files.

    python3 -m venv .venv && .venv/bin/pip install -r examples/python/requirements.txt
    .venv/bin/python -m grpc_tools.protoc -I proto --python_out=gen --grpc_python_out=gen \
        proto/authz/v1/*.proto
    PYTHONPATH=gen AUTHZ_SERVER=127.0.0.1:50051 .venv/bin/python examples/python/check.py

It sets up a tenant (as an operator: run it against a server without keys, or set
AUTHZ_API_KEY to an operator key), then checks. A denied check is an answer, not an error:
`decision` says DECISION_DENIED, and JSON shows it even though `allowed: false` is left out.
"""

import json
import os
import sys

import grpc
from google.protobuf import json_format

from authz.v1 import admin_pb2, admin_pb2_grpc, authz_pb2, authz_pb2_grpc, common_pb2

server = os.environ.get("AUTHZ_SERVER", "127.0.0.1:50051")
key = os.environ.get("AUTHZ_API_KEY", "")
metadata = [("authorization", f"Bearer {key}")] if key else []
tenant = os.environ.get("TENANT", "acme-py")

channel = grpc.insecure_channel(server)
admin = admin_pb2_grpc.AdminServiceStub(channel)
authz = authz_pb2_grpc.AuthzServiceStub(channel)

admin.CreateTenant(
    admin_pb2.CreateTenantRequest(tenant_id=tenant, display_name="Acme"), metadata=metadata
)
write = admin.AddGroupMembers(
    admin_pb2.AddGroupMembersRequest(tenant_id=tenant, group_key="analysts", user_ids=["alice"]),
    metadata=metadata,
)
# Read-your-writes: the write's revision, as the checks' consistency.
fresh = common_pb2.Consistency(at_least_as_fresh=write.revision)


def check(permission, **kw):
    request = authz_pb2.CheckRequest(
        tenant_id=tenant, user_id="alice", permission=permission, consistency=fresh, **kw
    )
    return authz.Check(request, metadata=metadata, timeout=5)


allowed = check("export_customers")
denied = check("delete_customers", explain=True)
print(json.dumps({
    "export_customers": json_format.MessageToDict(allowed),
    "delete_customers": json_format.MessageToDict(denied),
}, indent=2, sort_keys=True))

assert allowed.decision == authz_pb2.DECISION_ALLOWED and allowed.allowed
assert denied.decision == authz_pb2.DECISION_DENIED and not denied.allowed
assert list(denied.missing_permissions) == ["delete_customers"]

# Many checks at once; a bad item gets its own error, the others their answers.
batch = authz.BatchCheck(
    authz_pb2.BatchCheckRequest(
        tenant_id=tenant,
        consistency=fresh,
        items=[
            authz_pb2.BatchCheckItem(user_id="alice", permission="view_reports"),
            authz_pb2.BatchCheckItem(
                user_id="alice",
                permission="view_reports",
                resource=common_pb2.Resource(type="folder", id="f1"),
            ),
            authz_pb2.BatchCheckItem(user_id="alice", permission="no_such_permission"),
        ],
    ),
    metadata=metadata,
    timeout=5,
)
names = {v.number: v.name for v in authz_pb2.Decision.DESCRIPTOR.values}
for item in batch.results:
    print("batch:", names[item.decision], item.error.message)

# A mistake is an error status with a message that says what to fix.
try:
    check("export_customer")
except grpc.RpcError as e:
    print("error:", e.code().name, e.details())
    sys.exit(0)
sys.exit("a misspelt permission was not refused")
