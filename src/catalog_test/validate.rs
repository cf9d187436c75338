//! Validation: every name the file uses, before anything runs.

use super::file::*;
use super::*;

// ---- Validation: every name the file uses, before anything runs ----

pub(super) struct Validator<'a> {
    pub(super) catalog: &'a Catalog,
    pub(super) file: &'a TestFile,
    pub(super) lines: &'a Lines,
    pub(super) users: BTreeSet<&'a str>,
    pub(super) custom_groups: BTreeSet<&'a str>,
    pub(super) problems: Vec<Problem>,
}

impl<'a> Validator<'a> {
    pub(super) fn new(catalog: &'a Catalog, file: &'a TestFile, lines: &'a Lines) -> Self {
        Self {
            catalog,
            file,
            lines,
            users: file.users.iter().map(|u| u.get_ref().id.as_str()).collect(),
            custom_groups: file
                .custom_groups
                .iter()
                .map(|g| g.get_ref().key.as_str())
                .collect(),
            problems: Vec::new(),
        }
    }

    pub(super) fn validate(mut self) -> Vec<Problem> {
        let file = self.file;
        let mut seen_groups = BTreeSet::new();
        for g in &file.custom_groups {
            let group = g.get_ref();
            let mut errs = Vec::new();
            if !seen_groups.insert(group.key.as_str()) {
                errs.push(format!("custom group `{}` is declared twice", group.key));
            }
            if self.catalog.group(&group.key).is_some() {
                errs.push(format!(
                    "`{}` is a system group of the catalog; give the custom group another key",
                    group.key
                ));
            }
            self.permissions(&group.permissions, &mut errs);
            self.scoped_list(&group.scoped, &mut errs);
            self.report(g, format!("custom_groups {:?}", group.key), errs);
        }
        let mut seen_users = BTreeSet::new();
        for u in &file.users {
            let user = u.get_ref();
            let mut errs = Vec::new();
            if !seen_users.insert(user.id.as_str()) {
                errs.push(format!("user `{}` is declared twice", user.id));
            }
            for g in &user.groups {
                self.group(g, &mut errs);
            }
            self.permissions(&user.permissions, &mut errs);
            self.scoped_list(&user.scoped, &mut errs);
            for (t, ids) in &user.restrictions {
                self.resource_type(t, &mut errs);
                if ids.is_empty() {
                    errs.push(format!(
                        "restrictions.{t} is empty: list the resources the user is limited to, or leave the type out"
                    ));
                }
            }
            self.report(u, format!("users {:?}", user.id), errs);
        }
        for (line, case) in file.cases(self.lines) {
            let mut errs = Vec::new();
            match case {
                Case::Check(c) => self.check(c, &mut errs),
                Case::Effective(c) => self.effective(c, &mut errs),
                Case::Admin(c) => self.admin(c, &mut errs),
            }
            self.problems
                .extend(errs.into_iter().map(|message| Problem {
                    line: Some(line),
                    item: Some(case.label()),
                    message,
                }));
        }
        self.problems
    }

    pub(super) fn report<T>(&mut self, item: &Spanned<T>, label: String, errs: Vec<String>) {
        let line = self.lines.of(item);
        for message in errs {
            self.problems.push(Problem {
                line: Some(line),
                item: Some(label.clone()),
                message,
            });
        }
    }

    pub(super) fn user(&self, id: &str, errs: &mut Vec<String>) {
        if self.users.contains(id) {
            return;
        }
        errs.push(match closest(id, self.users.iter().copied()) {
            Some(c) => format!("unknown user `{id}`; did you mean `{c}`?"),
            None => format!("unknown user `{id}`: declare it in [[users]]"),
        });
    }

    pub(super) fn group(&self, key: &str, errs: &mut Vec<String>) {
        if self.catalog.group(key).is_some() || self.custom_groups.contains(key) {
            return;
        }
        let known = self
            .catalog
            .groups()
            .iter()
            .map(|g| g.key.as_str())
            .chain(self.custom_groups.iter().copied());
        let by_rule = key_from_name(key);
        errs.push(
            if by_rule != key
                && (self.catalog.group(&by_rule).is_some()
                    || self.custom_groups.contains(by_rule.as_str()))
            {
                format!("unknown group `{key}`; did you mean `{by_rule}`?")
            } else {
                match closest(key, known) {
                    Some(c) => format!("unknown group `{key}`; did you mean `{c}`?"),
                    None => format!(
                        "unknown group `{key}`: neither a system group of the catalog nor a custom group of [[custom_groups]]"
                    ),
                }
            },
        );
    }

    pub(super) fn permission(&self, key: &str, errs: &mut Vec<String>) {
        if self.catalog.resolve(key).is_some() {
            return;
        }
        let by_rule = key_from_name(key);
        let hint = if by_rule != key && self.catalog.resolve(&by_rule).is_some() {
            Some(by_rule)
        } else {
            closest(
                &by_rule,
                self.catalog.permissions().iter().map(|p| p.key.as_str()),
            )
            .map(str::to_owned)
        };
        errs.push(match hint {
            Some(h) => format!("unknown permission `{key}`; did you mean `{h}`?"),
            None => format!("unknown permission `{key}`: the catalog has no such permission"),
        });
    }

    pub(super) fn permissions(&self, keys: &[String], errs: &mut Vec<String>) {
        for k in keys {
            self.permission(k, errs);
        }
    }

    pub(super) fn resource_type(&self, key: &str, errs: &mut Vec<String>) {
        if self.catalog.resource_type(key).is_some() {
            return;
        }
        let known: Vec<&str> = self
            .catalog
            .resource_types()
            .iter()
            .map(|t| t.key.as_str())
            .collect();
        errs.push(match closest(key, known.iter().copied()) {
            Some(c) => format!("unknown resource type `{key}`; did you mean `{c}`?"),
            None if known.is_empty() => {
                format!("unknown resource type `{key}`: the catalog declares no resource types")
            }
            None => format!(
                "unknown resource type `{key}`; the catalog has: {}",
                known.join(", ")
            ),
        });
    }

    /// `type:id`.
    pub(super) fn resource(&self, text: &str, errs: &mut Vec<String>) {
        match split_resource(text) {
            Some((t, _)) => self.resource_type(t, errs),
            None => errs.push(format!(
                "resource {text:?} is not `type:id` (e.g. `folder:spring`)"
            )),
        }
    }

    /// `permission@type:id`.
    pub(super) fn scoped(&self, text: &str, errs: &mut Vec<String>) {
        match split_scoped(text) {
            Some((p, t, _)) => {
                self.permission(p, errs);
                self.resource_type(t, errs);
            }
            None => errs.push(format!(
                "scoped grant {text:?} is not `permission@type:id` (e.g. `edit_app@app:42`)"
            )),
        }
    }

    pub(super) fn scoped_list(&self, list: &[String], errs: &mut Vec<String>) {
        for s in list {
            self.scoped(s, errs);
        }
    }

    pub(super) fn role(&self, key: &str, errs: &mut Vec<String>) {
        let roles = self.catalog.roles();
        if roles.iter().any(|r| r.key == key) {
            return;
        }
        errs.push(match closest(key, roles.iter().map(|r| r.key.as_str())) {
            Some(c) => format!("unknown role `{key}`; did you mean `{c}`?"),
            None if roles.is_empty() => {
                format!("unknown role `{key}`: the catalog declares no [[roles]]")
            }
            None => {
                let keys: Vec<&str> = roles.iter().map(|r| r.key.as_str()).collect();
                format!(
                    "unknown role `{key}`: the catalog's roles are {}",
                    keys.join(", ")
                )
            }
        });
    }

    pub(super) fn effective(&self, c: &EffectiveCase, errs: &mut Vec<String>) {
        self.user(&c.user, errs);
        if let Some(p) = &c.permissions {
            self.permissions(p, errs);
        }
        self.permissions(&c.includes, errs);
        self.permissions(&c.excludes, errs);
        for r in c.roles.iter().flatten() {
            self.role(r, errs);
        }
        if let Some(s) = &c.scoped {
            self.scoped_list(s, errs);
        }
        if c.permissions.is_none()
            && c.includes.is_empty()
            && c.excludes.is_empty()
            && c.roles.is_none()
            && c.scoped.is_none()
        {
            errs.push(
                "expects nothing: set permissions, includes, excludes, roles or scoped".to_owned(),
            );
        }
    }

    pub(super) fn check(&self, c: &CheckCase, errs: &mut Vec<String>) {
        self.user(&c.user, errs);
        let targets = [&c.permission, &c.action, &c.expression]
            .iter()
            .filter(|t| t.is_some())
            .count();
        if targets != 1 {
            errs.push("set exactly one of permission, action or expression".to_owned());
        }
        if let Some(p) = &c.permission {
            self.permission(p, errs);
        }
        if let Some(a) = &c.action {
            if self.catalog.action(a).is_none() {
                let keys = self.catalog.actions().iter().map(|x| x.key.as_str());
                errs.push(match closest(a, keys) {
                    Some(k) => format!("unknown action `{a}`; did you mean `{k}`?"),
                    None => format!(
                        "unknown action `{a}`: `authzd catalog check` lists the catalog; actions are `<page>.<row>` keys"
                    ),
                });
            }
        }
        if let Some(e) = &c.expression {
            if let Err(err) = self.catalog.parse_expression(e) {
                errs.push(format!("expression: {err}"));
            }
        }
        if let Some(r) = &c.resource {
            self.resource(r, errs);
        }
        for flag in c.context.keys() {
            if self.catalog.flag(flag).is_none() {
                let keys = self.catalog.context_flags().iter().map(|f| f.key.as_str());
                errs.push(match closest(flag, keys) {
                    Some(k) => format!("unknown context flag `{flag}`; did you mean `{k}`?"),
                    None => {
                        format!("unknown context flag `{flag}`: the catalog does not declare it")
                    }
                });
            }
        }
        if let Some(missing) = &c.missing {
            self.permissions(missing, errs);
        }
        match (c.allowed, &c.error) {
            (Some(_), Some(_)) => errs.push(
                "set either allowed (a decision) or error (a refused check), not both".to_owned(),
            ),
            (None, None) => {
                errs.push("expects nothing: set allowed = true or false (or error)".to_owned())
            }
            (None, Some(_)) if c.missing.is_some() || c.denied_by_restriction.is_some() => errs
                .push("missing and denied_by_restriction describe a decision: set allowed too".to_owned()),
            (Some(true), _) if c.missing.as_ref().is_some_and(|m| !m.is_empty()) => {
                errs.push("an allowed check misses nothing: remove missing or set allowed = false".to_owned())
            }
            (Some(true), _) if c.denied_by_restriction == Some(true) => errs.push(
                "an allowed check is not denied by a restriction: remove denied_by_restriction or set allowed = false"
                    .to_owned(),
            ),
            _ => {}
        }
    }

    pub(super) fn admin(&self, c: &AdminCase, errs: &mut Vec<String>) {
        self.user(&c.actor, errs);
        match (c.refused, &c.error) {
            (Some(_), Some(_)) => errs.push(
                "set either refused (by the admin rules) or error (any failure), not both"
                    .to_owned(),
            ),
            (None, None) => {
                errs.push("expects nothing: set refused = true or false (or error)".to_owned())
            }
            _ => {}
        }
        if c.reason.is_some() && c.refused != Some(true) {
            errs.push("reason describes a refusal: set refused = true".to_owned());
        }
        let ops = c.operations();
        match ops.as_slice() {
            [] => {
                let keys: Vec<&str> = c.slots().iter().map(|(k, _)| *k).collect();
                errs.push(format!(
                    "names no operation; set one of {}",
                    keys.join(", ")
                ));
            }
            [(_, op)] => self.operation(op, errs),
            more => {
                let keys: Vec<&str> = more.iter().map(|(k, _)| *k).collect();
                errs.push(format!(
                    "names {} operations ({}); an admin call makes one",
                    keys.len(),
                    keys.join(", ")
                ));
            }
        }
    }

    pub(super) fn operation(&self, op: &Op<'_>, errs: &mut Vec<String>) {
        match op {
            Op::Grants(_, g) => {
                self.user(&g.user, errs);
                self.permissions(&g.permissions, errs);
                if let Some(r) = &g.resource {
                    self.resource(r, errs);
                }
            }
            Op::CreateGroup(g) => {
                self.permissions(&g.permissions, errs);
                self.scoped_list(&g.scoped, errs);
            }
            Op::UpdateGroup(g) => {
                self.group(&g.group, errs);
                if let Some(p) = &g.permissions {
                    self.permissions(p, errs);
                }
                if let Some(s) = &g.scoped {
                    self.scoped_list(s, errs);
                }
                if g.name.is_none()
                    && g.description.is_none()
                    && g.permissions.is_none()
                    && g.scoped.is_none()
                {
                    errs.push(
                        "update_group changes nothing: set name, description, permissions or scoped"
                            .to_owned(),
                    );
                }
            }
            Op::DeleteGroup(g) | Op::GetGroup(g) => self.group(&g.group, errs),
            Op::DuplicateGroup(d) => self.group(&d.group, errs),
            Op::Members(_, m) => {
                self.group(&m.group, errs);
                for u in &m.users {
                    self.user(u, errs);
                }
            }
            Op::SetStatus(s) => self.user(&s.user, errs),
            Op::Restrict(r) => {
                self.user(&r.user, errs);
                self.resource_type(&r.resource_type, errs);
            }
            // A profile or an import may name new users.
            Op::Upsert(_) => {}
            Op::Import(i) => {
                for row in &i.rows {
                    for g in &row.groups {
                        self.group(g, errs);
                    }
                    self.permissions(&row.permissions, errs);
                }
            }
            Op::GetUser(u) => self.user(&u.user, errs),
            Op::ListUsers(l) => {
                if let Some(g) = &l.group {
                    self.group(g, errs);
                }
            }
            Op::ListGroups | Op::ListAudit => {}
        }
    }
}

pub(super) fn split_resource(text: &str) -> Option<(&str, &str)> {
    text.split_once(':')
        .filter(|(t, id)| !t.is_empty() && !id.is_empty())
}

pub(super) fn split_scoped(text: &str) -> Option<(&str, &str, &str)> {
    let (p, r) = text.split_once('@')?;
    let (t, id) = split_resource(r)?;
    (!p.is_empty()).then_some((p, t, id))
}

pub(super) fn resource_input(text: &str) -> Option<ResourceInput> {
    split_resource(text).map(|(t, id)| ResourceInput {
        resource_type: t.to_owned(),
        id: id.to_owned(),
    })
}

pub(super) fn scoped_inputs(list: &[String]) -> Vec<(String, ResourceInput)> {
    list.iter()
        .filter_map(|s| split_scoped(s))
        .map(|(p, t, id)| {
            (
                p.to_owned(),
                ResourceInput {
                    resource_type: t.to_owned(),
                    id: id.to_owned(),
                },
            )
        })
        .collect()
}
