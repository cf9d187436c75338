//! Running: fixtures as operator writes, cases through the application.

use super::file::*;
use super::validate::*;
use super::*;

// ---- Running: fixtures as operator writes, cases through the application ----

pub(super) struct Runner {
    pub(super) app: Authz,
    pub(super) catalog: Arc<Catalog>,
    pub(super) tenant: TenantId,
}

/// A case's result before it is named.
pub(super) enum Judged {
    Outcome(Judgement),
    /// The application refused the case's input as malformed: the file must be fixed.
    Invalid(String),
}

pub(super) struct Judgement {
    pub(super) passed: bool,
    pub(super) expected: String,
    pub(super) got: String,
    pub(super) explanation: Option<String>,
}

impl Judgement {
    pub(super) fn named(self, kind: &'static str, name: String, line: usize) -> Outcome {
        Outcome {
            kind,
            name,
            line,
            passed: self.passed,
            expected: self.expected,
            got: self.got,
            explanation: self.explanation,
        }
    }
}

/// `[a, b]`.
pub(super) fn list<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    let items: Vec<String> = items.into_iter().map(|s| s.as_ref().to_owned()).collect();
    format!("[{}]", items.join(", "))
}

impl Runner {
    pub(super) async fn load_fixtures(
        &self,
        file: &TestFile,
        lines: &Lines,
    ) -> Result<(), Invalid> {
        let app = &self.app;
        let op = &AdminCall {
            by: By::Operator,
            mode: WriteMode::Commit,
        };
        let tenant = &self.tenant;
        let fail = |line: usize, item: String, e: Error| Invalid {
            problems: vec![Problem {
                line: Some(line),
                item: Some(item),
                message: e.to_string(),
            }],
        };
        app.create_tenant(tenant, "catalog test")
            .await
            .map_err(|e| Invalid {
                problems: vec![Problem::file(e.to_string())],
            })?;
        for g in &file.custom_groups {
            let group = g.get_ref();
            let input = GroupInput {
                key: group.key.clone(),
                name: group.name.clone().unwrap_or_else(|| group.key.clone()),
                description: group.description.clone(),
                permissions: group.permissions.clone(),
                scoped_grants: scoped_inputs(&group.scoped),
            };
            app.create_group(tenant, op, &input)
                .await
                .map_err(|e| fail(lines.of(g), format!("custom_groups {:?}", group.key), e))?;
        }
        for u in &file.users {
            let user = u.get_ref();
            let at = |e: Error| fail(lines.of(u), format!("users {:?}", user.id), e);
            let id = UserId::parse("id", user.id.as_str()).map_err(at)?;
            app.upsert_user(tenant, op, &id, "", "").await.map_err(at)?;
            for g in &user.groups {
                let key = GroupKey::parse("groups", g.as_str()).map_err(at)?;
                let users = UserIds::parse("id", vec![user.id.clone()]).map_err(at)?;
                app.change_members(tenant, op, &key, &users, Direction::Add)
                    .await
                    .map_err(at)?;
            }
            if !user.permissions.is_empty() {
                app.change_grants(tenant, op, &id, Direction::Add, &user.permissions, None)
                    .await
                    .map_err(at)?;
            }
            for (permission, resource) in scoped_inputs(&user.scoped) {
                let scoped = Some(&resource);
                app.change_grants(tenant, op, &id, Direction::Add, &[permission], scoped)
                    .await
                    .map_err(at)?;
            }
            for (resource_type, ids) in &user.restrictions {
                app.set_restrictions(tenant, op, &id, resource_type, ids, false)
                    .await
                    .map_err(at)?;
            }
            if user.status == Status::Blocked {
                app.set_user_status(tenant, op, &id, Some(UserStatus::Blocked))
                    .await
                    .map_err(at)?;
            }
        }
        Ok(())
    }

    pub(super) fn canonical(&self, key: &str) -> String {
        self.catalog
            .resolve(key)
            .map_or_else(|| key.to_owned(), |p| self.catalog.key(p).to_owned())
    }

    /// Permission keys as the catalog names them (aliases resolved), sorted.
    pub(super) fn canonical_set(&self, keys: &[String]) -> BTreeSet<String> {
        keys.iter().map(|k| self.canonical(k)).collect()
    }

    /// `permission@type:id` with the permission's key resolved.
    pub(super) fn canonical_scoped(&self, list: &[String]) -> BTreeSet<String> {
        list.iter()
            .map(|s| match split_scoped(s) {
                Some((p, t, id)) => format!("{}@{t}:{id}", self.canonical(p)),
                None => s.clone(),
            })
            .collect()
    }

    pub(super) async fn check(&self, c: &CheckCase) -> Judged {
        let target = if let Some(p) = &c.permission {
            TargetInput::Permission(p.clone())
        } else if let Some(a) = &c.action {
            TargetInput::Action(a.clone())
        } else {
            TargetInput::Expression(c.expression.clone().unwrap_or_default())
        };
        let input = CheckInput {
            user_id: c.user.clone(),
            target: Some(target),
            resource: c.resource.as_deref().and_then(resource_input),
            context: c.context.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            explain: true,
        };
        let result = self
            .app
            .check(&self.tenant, &input, Consistency::Full)
            .await;
        let mut expected = Vec::new();
        if let Some(a) = c.allowed {
            expected.push(format!("allowed = {a}"));
        }
        if let Some(m) = &c.missing {
            expected.push(format!("missing = {}", list(self.canonical_set(m))));
        }
        if let Some(r) = c.denied_by_restriction {
            expected.push(format!("denied_by_restriction = {r}"));
        }
        if let Some(e) = &c.error {
            expected.push(format!("an error containing {e:?}"));
        }
        let expected = expected.join(", ");
        let (checked, _) = match result {
            Ok(done) => done,
            Err(e) => {
                let message = e.to_string();
                return match &c.error {
                    Some(part) => Judged::Outcome(Judgement {
                        passed: message.contains(part.as_str()),
                        expected,
                        got: format!("error: {message}"),
                        explanation: None,
                    }),
                    None if matches!(e, Error::Invalid(_)) => Judged::Invalid(format!(
                        "the check is refused as malformed: {message} (fix the case, or expect it with `error = \"...\"`)"
                    )),
                    None => Judged::Outcome(Judgement {
                        passed: false,
                        expected,
                        got: format!("error: {message}"),
                        explanation: None,
                    }),
                };
            }
        };
        let d = &checked.decision;
        let missing: BTreeSet<String> = d
            .missing
            .iter()
            .map(|p| self.catalog.key(*p).to_owned())
            .collect();
        let mut got = format!("allowed = {}", d.allowed);
        if !d.allowed {
            got.push_str(&format!(", missing = {}", list(&missing)));
        }
        if let Some(r) = &d.denied_by_restriction {
            got.push_str(&format!(
                ", denied_by_restriction = true (limited to {} {})",
                self.catalog.resource_type_key(r.resource_type),
                r.allowed_ids.join(", ")
            ));
        }
        let passed = c.error.is_none()
            && c.allowed == Some(d.allowed)
            && c.missing
                .as_ref()
                .is_none_or(|m| self.canonical_set(m) == missing)
            && c.denied_by_restriction
                .is_none_or(|r| r == d.denied_by_restriction.is_some());
        Judged::Outcome(Judgement {
            passed,
            expected,
            got,
            explanation: d.explanation.as_ref().map(|e| e.summary.clone()),
        })
    }

    pub(super) async fn effective(&self, c: &EffectiveCase) -> Judged {
        // GetEffectivePermissions' own reading of a user.
        let user = match UserId::parse("user", c.user.as_str()) {
            Ok(u) => u,
            Err(e) => return Judged::Invalid(e.to_string()),
        };
        let (view, _) = match self
            .app
            .effective(&self.tenant, &user, Consistency::Full)
            .await
        {
            Ok(s) => s,
            Err(e) => return Judged::Invalid(e.to_string()),
        };
        let catalog = &self.catalog;
        let effective = &view.permissions;
        let held: BTreeSet<String> = effective
            .iter()
            .map(|e| catalog.key(e.permission).to_owned())
            .collect();
        let sources: HashMap<&str, String> = effective
            .iter()
            .map(|e| {
                let from: Vec<String> = e.sources.iter().map(|s| s.render(catalog, None)).collect();
                (catalog.key(e.permission), from.join(", "))
            })
            .collect();
        let roles: BTreeSet<String> = view.roles.iter().cloned().collect();
        let scoped: BTreeSet<String> = view
            .scoped
            .iter()
            .map(|(g, _)| {
                format!(
                    "{}@{}:{}",
                    catalog.key(g.permission),
                    catalog.resource_type_key(g.resource.resource_type),
                    g.resource.id
                )
            })
            .collect();
        let mut expected = Vec::new();
        let mut wrong = Vec::new();
        if let Some(p) = &c.permissions {
            let want = self.canonical_set(p);
            expected.push(format!("permissions = {}", list(&want)));
            if want != held {
                let extra: Vec<&String> = held.difference(&want).collect();
                let lacking: Vec<&String> = want.difference(&held).collect();
                let mut diff = Vec::new();
                if !extra.is_empty() {
                    diff.push(format!("also holds {}", list(extra)));
                }
                if !lacking.is_empty() {
                    diff.push(format!("lacks {}", list(lacking)));
                }
                wrong.push(format!("permissions: {}", diff.join("; ")));
            }
        }
        if !c.includes.is_empty() {
            let want = self.canonical_set(&c.includes);
            expected.push(format!("includes = {}", list(&want)));
            let lacking: Vec<&String> = want.difference(&held).collect();
            if !lacking.is_empty() {
                wrong.push(format!("lacks {}", list(lacking)));
            }
        }
        if !c.excludes.is_empty() {
            let want = self.canonical_set(&c.excludes);
            expected.push(format!("excludes = {}", list(&want)));
            let present: Vec<String> = want
                .intersection(&held)
                .map(|k| {
                    format!(
                        "{k} (from {})",
                        sources.get(k.as_str()).map_or("", String::as_str)
                    )
                })
                .collect();
            if !present.is_empty() {
                wrong.push(format!("holds {}", present.join(", ")));
            }
        }
        if let Some(r) = &c.roles {
            let want: BTreeSet<String> = r.iter().cloned().collect();
            expected.push(format!("roles = {}", list(&want)));
            if want != roles {
                wrong.push(format!("roles = {}", list(&roles)));
            }
        }
        if let Some(s) = &c.scoped {
            let want = self.canonical_scoped(s);
            expected.push(format!("scoped = {}", list(&want)));
            if want != scoped {
                wrong.push(format!("scoped = {}", list(&scoped)));
            }
        }
        let passed = wrong.is_empty();
        Judged::Outcome(Judgement {
            passed,
            expected: expected.join(", "),
            got: if passed {
                "as expected".to_owned()
            } else {
                wrong.join("; ")
            },
            explanation: None,
        })
    }

    pub(super) async fn admin(&self, c: &AdminCase, op: Op<'_>) -> Judged {
        let result = self.call(&c.actor, op).await;
        let mut expected = match (c.refused, &c.error) {
            (Some(true), _) => "refused = true".to_owned(),
            (Some(false), _) => "refused = false".to_owned(),
            (None, Some(e)) => format!("an error containing {e:?}"),
            (None, None) => String::new(),
        };
        if let Some(r) = &c.reason {
            expected.push_str(&format!(", reason containing {r:?}"));
        }
        let (got, passed) = match &result {
            Ok(()) => (
                "refused = false (the call would succeed)".to_owned(),
                c.refused == Some(false),
            ),
            Err(e) if e.refused_by().is_some() => {
                let message = e.to_string();
                let passed = match (c.refused, &c.error) {
                    (Some(refused), _) => {
                        refused
                            && c.reason
                                .as_ref()
                                .is_none_or(|r| message.contains(r.as_str()))
                    }
                    (None, Some(part)) => message.contains(part.as_str()),
                    (None, None) => false,
                };
                (format!("refused = true: {message}"), passed)
            }
            Err(e) => {
                let message = e.to_string();
                match &c.error {
                    Some(part) => (format!("error: {message}"), message.contains(part.as_str())),
                    None if matches!(e, Error::Invalid(_)) => {
                        return Judged::Invalid(format!(
                            "the call is refused as malformed: {message} (fix the case, or expect it with `error = \"...\"`)"
                        ));
                    }
                    None => (format!("error (not an admin refusal): {message}"), false),
                }
            }
        };
        Judged::Outcome(Judgement {
            passed,
            expected,
            got,
            explanation: None,
        })
    }

    /// The operation as `actor`, a dry run for every write.
    pub(super) async fn call(&self, actor: &str, op: Op<'_>) -> Result<(), Error> {
        let app = &self.app;
        let tenant = &self.tenant;
        let actor = &By::parse("actor", actor)?;
        let call = &AdminCall {
            by: actor.clone(),
            mode: WriteMode::DryRun,
        };
        let user = |id: &str| UserId::parse("user", id);
        let group = |key: &str| GroupKey::parse("group", key);
        match op {
            Op::Grants(direction, g) => {
                let resource = g.resource.as_deref().and_then(resource_input);
                let (id, permissions) = (user(&g.user)?, &g.permissions);
                app.change_grants(tenant, call, &id, direction, permissions, resource.as_ref())
                    .await
                    .map(drop)
            }
            Op::CreateGroup(g) => {
                let input = GroupInput {
                    key: g.key.clone(),
                    name: g.name.clone().unwrap_or_else(|| g.key.clone()),
                    description: g.description.clone(),
                    permissions: g.permissions.clone(),
                    scoped_grants: scoped_inputs(&g.scoped),
                };
                app.create_group(tenant, call, &input).await.map(drop)
            }
            Op::UpdateGroup(g) => {
                let mut mask = Vec::new();
                let mut input = GroupInput {
                    key: g.group.clone(),
                    ..GroupInput::default()
                };
                if let Some(n) = &g.name {
                    mask.push("name".to_owned());
                    input.name = n.clone();
                }
                if let Some(d) = &g.description {
                    mask.push("description".to_owned());
                    input.description = d.clone();
                }
                if let Some(p) = &g.permissions {
                    mask.push("permissions".to_owned());
                    input.permissions = p.clone();
                }
                if let Some(s) = &g.scoped {
                    mask.push("scoped_grants".to_owned());
                    input.scoped_grants = scoped_inputs(s);
                }
                app.update_group(tenant, call, &group(&g.group)?, &input, &mask, None)
                    .await
                    .map(drop)
            }
            Op::DeleteGroup(g) => app
                .delete_group(tenant, call, &group(&g.group)?, None)
                .await
                .map(drop),
            Op::DuplicateGroup(d) => {
                let input = DuplicateInput {
                    source_group_key: group(&d.group)?,
                    new_key: d.new_key.clone(),
                    new_name: d.new_name.clone(),
                    copy_permissions: d.copy_permissions,
                    copy_scoped_grants: d.copy_scoped_grants,
                    copy_members: d.copy_members,
                };
                app.duplicate_group(tenant, call, &input).await.map(drop)
            }
            Op::Members(direction, m) => {
                let users = UserIds::parse("users", m.users.clone())?;
                app.change_members(tenant, call, &group(&m.group)?, &users, direction)
                    .await
                    .map(drop)
            }
            Op::SetStatus(s) => app
                .set_user_status(tenant, call, &user(&s.user)?, Some(s.status.into()))
                .await
                .map(drop),
            Op::Restrict(r) => app
                .set_restrictions(
                    tenant,
                    call,
                    &user(&r.user)?,
                    &r.resource_type,
                    &r.ids,
                    r.clear,
                )
                .await
                .map(drop),
            Op::Upsert(p) => app
                .upsert_user(tenant, call, &user(&p.user)?, &p.display_name, &p.email)
                .await
                .map(drop),
            Op::Import(i) => {
                let rows: Vec<ImportInput> = i
                    .rows
                    .iter()
                    .map(|r| ImportInput {
                        user_id: r.user.clone(),
                        display_name: r.display_name.clone(),
                        email: r.email.clone(),
                        group_keys: r.groups.clone(),
                        permissions: r.permissions.clone(),
                    })
                    .collect();
                app.import_users(tenant, call, &rows).await.map(drop)
            }
            Op::GetUser(u) => app
                .get_user(tenant, actor, &user(&u.user)?, Consistency::Full)
                .await
                .map(drop),
            Op::ListUsers(l) => app
                .list_users(
                    tenant,
                    actor,
                    l.group.as_deref().map(group).transpose()?.as_ref(),
                    &Paging::default(),
                    Consistency::Full,
                )
                .await
                .map(drop),
            Op::GetGroup(g) => app
                .get_group(tenant, actor, &group(&g.group)?)
                .await
                .map(drop),
            Op::ListGroups => app
                .list_groups(tenant, actor, &Paging::default())
                .await
                .map(drop),
            Op::ListAudit => app
                .list_audit(tenant, actor, AuditFilter::default())
                .await
                .map(drop),
        }
    }
}
