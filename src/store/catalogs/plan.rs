//! Reconciling a replica's catalog at start, and planning (and applying) a catalog change.

use super::*;

/// A catalog change planned against a database, and carried out when asked.
#[derive(Debug, Serialize)]
pub struct Plan {
    /// The newest record before the change.
    pub recorded: Option<Recorded>,
    pub catalog: PlanCatalog,
    pub compatible: bool,
    pub comparison: Comparison,
    pub mappings: Mappings,
    /// Tenants whose users or groups change, each with who gains or loses what.
    pub tenants: Vec<TenantPreview>,
    /// Tenants the database holds.
    pub tenants_total: usize,
    pub users_changed: u64,
    /// Stored permission keys an apply rewrites: to the new catalog's key (an alias's
    /// permission), or dropped (`to` empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rewrites: Vec<Rewrite>,
    /// The record an apply wrote.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct PlanCatalog {
    pub name: String,
    pub version: String,
    pub fingerprint: String,
}

impl PlanCatalog {
    fn of(c: &Catalog) -> Self {
        Self {
            name: c.name.clone(),
            version: c.version.clone(),
            fingerprint: c.fingerprint.clone(),
        }
    }
}

/// A stored key an apply rewrites.
#[derive(Debug, Serialize)]
pub struct Rewrite {
    pub from: String,
    /// The new key; empty: the key is dropped.
    pub to: String,
    pub uses: u64,
    pub tenants: usize,
}

/// Data rewrites of an apply: stored key → its new key, or `""` to drop it.
pub(super) fn key_rewrites(
    new: &Catalog,
    usage: &Usage,
    m: &Mappings,
) -> (Vec<String>, Vec<String>) {
    let mut from = Vec::new();
    let mut to = Vec::new();
    for k in usage.permissions.keys() {
        if m.drop_permissions.contains(k) {
            from.push(k.clone());
            to.push(String::new());
        } else if let Some(p) = new.resolve(k) {
            if new.key(p) != k {
                from.push(k.clone());
                to.push(new.key(p).to_owned());
            }
        }
    }
    (from, to)
}

impl PostgresStore {
    /// Records this replica's catalog when the database's newest record is compatible with it,
    /// or refuses with every conflict and how to resolve it.
    pub async fn reconcile(&self) -> std::result::Result<Start, String> {
        let own = self.catalog().clone();
        let mut client = self.write_client().await.map_err(|e| e.to_string())?;
        let tx = client.transaction().await.map_err(|e| pg(e).to_string())?;
        let fail = |e: StoreError| e.to_string();
        if let Some(rec) = latest(&tx).await.map_err(fail)? {
            if rec.fingerprint == own.fingerprint {
                self.guard().check(&tx, rec.id).await.map_err(fail)?;
                return Ok(Start::Same(rec.id));
            }
        }
        // From here on no write runs until this transaction ends.
        tx.run("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
            .await
            .map_err(fail)?;
        let rec = latest(&tx).await.map_err(fail)?;
        let old = match &rec {
            Some(r) if r.fingerprint == own.fingerprint => {
                self.guard().check(&tx, r.id).await.map_err(fail)?;
                return Ok(Start::Same(r.id));
            }
            Some(r) => Some(r.catalog()?),
            None => None,
        };
        let usage = usage(&tx, &group_keys(old.as_ref(), &own))
            .await
            .map_err(fail)?;
        let forward = evolve::compare(old.as_ref(), &own, Some(&usage), &Mappings::default());
        if forward.compatible() {
            let how = if rec.is_none() {
                "initial"
            } else {
                "compatible"
            };
            let id = insert_record(&tx, &own, how, &serde_json::json!({}))
                .await
                .map_err(fail)?;
            tx.run("SELECT pg_notify($1, $2)", &[&CHANNEL, &id.to_string()])
                .await
                .map_err(fail)?;
            tx.commit().await.map_err(|e| pg(e).to_string())?;
            self.guard().set(id, None, None);
            return Ok(Start::Recorded { id, how });
        }
        if let (Some(r), Some(o)) = (&rec, &old) {
            let backward = evolve::compare(Some(&own), o, Some(&usage), &Mappings::default());
            if backward.compatible() && successor(&own, r, o).is_ok() {
                self.guard().check(&tx, r.id).await.map_err(fail)?;
                return Ok(Start::Behind(r.id));
            }
        }
        let against = match &rec {
            Some(r) => format!("the catalog the database records, {}", r.describe()),
            None => "the data the database holds (it records no catalog yet)".to_owned(),
        };
        Err(format!(
            "refusing to serve catalog {} against {against}; it would change the meaning of what is stored or decided:\n{}\n\
             To see who would gain or lose what: authzd catalog diff --database-url URL CATALOG\n\
             To carry the change out on purpose: authzd catalog apply --database-url URL CATALOG (with the flags named above), then start again",
            describe(&own),
            forward.report()
        ))
    }

    /// Compares `new` with the database's catalog and data, previews every tenant, and, with
    /// `apply`, carries the change out in one transaction: stored keys rewritten by the
    /// mappings and the new catalog's aliases, the catalog recorded, one audit event per
    /// tenant, every replica notified. An apply with unresolved conflicts changes nothing.
    pub async fn plan_catalog(
        &self,
        new: &Catalog,
        mappings: &Mappings,
        apply: bool,
    ) -> std::result::Result<Plan, String> {
        mappings.validate(new)?;
        let fail = |e: StoreError| e.to_string();
        let mut client = self.write_client().await.map_err(fail)?;
        let tx = if apply {
            client.transaction().await
        } else {
            client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
        }
        .map_err(|e| pg(e).to_string())?;
        if apply {
            tx.run("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
                .await
                .map_err(fail)?;
        }
        let rec = latest(&tx).await.map_err(fail)?;
        let old = rec.as_ref().map(Recorded::catalog).transpose()?;
        let usage = usage(&tx, &group_keys(old.as_ref(), new))
            .await
            .map_err(fail)?;
        let comparison = evolve::compare(old.as_ref(), new, Some(&usage), mappings);
        // Every tenant's revision row, locked by an apply: its writes wait for it.
        let tenants: Vec<(String, i64)> = if apply {
            tx.all(
                "UPDATE tenants SET revision = revision + 1 RETURNING tenant_id, revision",
                &[],
            )
            .await
            .map_err(fail)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect::<Vec<(String, i64)>>()
            .into_iter()
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .collect()
        } else {
            tenant_ids(&tx)
                .await
                .map_err(fail)?
                .into_iter()
                .map(|t| (t, 0))
                .collect()
        };
        if !comparison.unused_mappings.is_empty() {
            let unchanged = rec
                .as_ref()
                .is_some_and(|r| r.fingerprint == new.fingerprint)
                && comparison.conflicts.is_empty();
            if !unchanged {
                return Err(format!(
                    "mappings that resolve no conflict are not carried out; leave them out:\n  - {}",
                    comparison.unused_mappings.join("\n  - ")
                ));
            }
        }
        let mut comparison = comparison;
        let mut previews = Vec::new();
        let mut predicted: BTreeMap<String, BTreeMap<String, evolve::UserView>> = BTreeMap::new();
        let mut users_changed = 0;
        let mut missing_targets: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut taken_keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (t, _) in &tenants {
            let data = tenant_data(&tx, t).await.map_err(fail)?;
            // A custom group renamed needs its new key free in its tenant.
            for (from, to) in &mappings.rename_groups {
                let renamed = data.groups.iter().any(|g| &g.key == from);
                let taken = data.groups.iter().any(|g| &g.key == to)
                    || data.users.iter().any(|u| u.groups.contains(to));
                if renamed && taken {
                    taken_keys
                        .entry(format!("{from}={to}"))
                        .or_default()
                        .push(t.clone());
                }
            }
            // Members moved into a custom group need that group in their tenant.
            for (from, to) in &mappings.move_members {
                let has_members = data.users.iter().any(|u| u.groups.contains(from))
                    && !data.groups.iter().any(|g| &g.key == from);
                let target = data
                    .groups
                    .iter()
                    .any(|g| mappings.rename_groups.get(&g.key).unwrap_or(&g.key) == to);
                if has_members && new.group(to).is_none() && !target {
                    missing_targets
                        .entry(format!("{from}={to}"))
                        .or_default()
                        .push(t.clone());
                }
            }
            let p = evolve::preview(old.as_ref(), new, mappings, &data, PREVIEW_LIMIT);
            if apply {
                let after = evolve::mapped(&data, new, mappings);
                predicted.insert(
                    t.clone(),
                    evolve::views(&after, new, &|k: &str| k.to_owned()),
                );
            }
            users_changed += p.users_changed;
            if !p.is_empty() {
                previews.push(p);
            }
        }
        for (pair, tenants) in missing_targets {
            let to = pair.split_once('=').map_or("", |(_, to)| to).to_owned();
            comparison.conflicts.push(evolve::Conflict {
                kind: "move_target_missing",
                key: to.clone(),
                detail: format!(
                    "--move-members {pair}: `{to}` is neither a system group of the new catalog nor a custom group of tenant{} {}",
                    if tenants.len() == 1 { "" } else { "s" },
                    tenants.join(", ")
                ),
                resolve: format!("create `{to}` in those tenants first, or move the members to a system group"),
                resolved_by: None,
            });
        }
        for (pair, tenants) in taken_keys {
            let to = pair.split_once('=').map_or("", |(_, to)| to).to_owned();
            comparison.conflicts.push(evolve::Conflict {
                kind: "rename_target_taken",
                key: to.clone(),
                detail: format!(
                    "--rename-group {pair}: `{to}` is already used in tenant{} {}",
                    if tenants.len() == 1 { "" } else { "s" },
                    tenants.join(", ")
                ),
                resolve: "rename to a key no tenant uses".to_owned(),
                resolved_by: None,
            });
        }
        let rewrites = {
            let (from, to) = key_rewrites(new, &usage, mappings);
            from.into_iter()
                .zip(to)
                .map(|(from, to)| {
                    let uses = usage.permissions.get(&from);
                    Rewrite {
                        uses: uses.map_or(0, |u| u.count),
                        tenants: uses.map_or(0, |u| u.tenants.len()),
                        from,
                        to,
                    }
                })
                .collect()
        };
        let mut plan = Plan {
            recorded: rec,
            catalog: PlanCatalog::of(new),
            compatible: comparison.compatible(),
            comparison,
            mappings: mappings.clone(),
            tenants: previews,
            tenants_total: tenants.len(),
            users_changed,
            rewrites,
            applied: None,
        };
        let unresolved = plan.comparison.unresolved().count();
        // The recorded catalog again, with nothing stored to carry over: nothing to do.
        let unchanged = plan
            .recorded
            .as_ref()
            .is_some_and(|r| r.fingerprint == new.fingerprint)
            && plan.comparison.conflicts.is_empty()
            && plan.rewrites.is_empty();
        if !apply || unresolved > 0 || unchanged {
            tx.rollback().await.map_err(|e| pg(e).to_string())?;
            return Ok(plan);
        }
        rewrite(&tx, new, &usage, mappings)
            .await
            .map_err(|e| format!("{e}; nothing was changed"))?;
        // The data must now be what the preview showed, and all of it readable by `new`.
        let after_usage = evolve::compare(
            None,
            new,
            Some(&usage_of(&tx, new).await.map_err(fail)?),
            &Mappings::default(),
        );
        if let Some(c) = after_usage.conflicts.first() {
            return Err(format!(
                "after the rewrite the data still conflicts with the new catalog ({}); nothing was changed",
                c.detail
            ));
        }
        for (t, _) in &tenants {
            let data = tenant_data(&tx, t).await.map_err(fail)?;
            let actual = evolve::views(&data, new, &|k: &str| k.to_owned());
            if predicted.get(t) != Some(&actual) {
                return Err(format!(
                    "the rewrite of tenant `{t}` does not match the preview; nothing was changed"
                ));
            }
        }
        let id = insert_record(
            &tx,
            new,
            "apply",
            &serde_json::to_value(mappings).unwrap_or_default(),
        )
        .await
        .map_err(fail)?;
        tx.run("SELECT pg_notify($1, $2)", &[&CHANNEL, &id.to_string()])
            .await
            .map_err(fail)?;
        let old_json = plan
            .recorded
            .as_ref()
            .map(|r| serde_json::json!({"name": r.name, "version": r.version, "fingerprint": r.fingerprint}));
        for (t, revision) in &tenants {
            let preview = plan.tenants.iter().find(|p| &p.tenant_id == t);
            let users: Vec<String> = preview
                .map(|p| {
                    p.users
                        .iter()
                        .take(AUDIT_LIST)
                        .map(|u| u.user_id.clone())
                        .collect()
                })
                .unwrap_or_default();
            let before = serde_json::json!({ "catalog": old_json });
            let after = serde_json::json!({
                "catalog": {"name": new.name, "version": new.version, "fingerprint": new.fingerprint, "record": id},
                "mappings": mappings,
                "users_changed": preview.map_or(0, |p| p.users_changed),
                "users": preview.map(|p| p.users.iter().take(AUDIT_LIST).map(capped).collect::<Vec<_>>()).unwrap_or_default(),
                "groups": preview.map(|p| p.groups.iter().take(AUDIT_LIST).cloned().collect::<Vec<_>>()).unwrap_or_default(),
            });
            tx.run(
                "INSERT INTO changes (tenant_id, revision, operation, users, groups, all_users, actor, target, before, after)
                 VALUES ($1, $2, 'catalog_apply', $3, '{}', true, NULL, $4, $5, $6)",
                &[
                    t,
                    revision,
                    &users,
                    &format!("catalog:{}@{}", new.name, new.version),
                    &before,
                    &after,
                ],
            )
            .await
            .map_err(fail)?;
            let mut notice = Notice::new(
                t,
                u64::try_from(*revision).unwrap_or(0),
                &crate::store::Touched {
                    all_users: true,
                    ..crate::store::Touched::default()
                },
            );
            notice.ag = true;
            tx.run(
                "SELECT pg_notify($1, $2)",
                &[&notify::CHANNEL, &notice.encode()],
            )
            .await
            .map_err(fail)?;
        }
        tx.commit().await.map_err(|e| pg(e).to_string())?;
        plan.applied = Some(id);
        Ok(plan)
    }

    /// Every recorded catalog, newest first.
    pub async fn catalog_history(&self) -> Result<Vec<Recorded>> {
        let mut client = self.write_client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let rows = tx
            .all(
                &format!("SELECT {RECORD_COLUMNS} FROM catalogs ORDER BY id DESC"),
                &[],
            )
            .await?;
        Ok(rows.iter().map(recorded).collect())
    }
}

/// Most entries of any list an apply's audit event holds (as every audit record).
pub(super) const AUDIT_LIST: usize = 100;

/// A user's change with each list cut to [`AUDIT_LIST`] entries.
pub(super) fn capped(u: &evolve::UserChange) -> evolve::UserChange {
    let cut = |v: &Vec<String>| v.iter().take(AUDIT_LIST).cloned().collect();
    evolve::UserChange {
        user_id: u.user_id.clone(),
        blocked: u.blocked,
        gained: cut(&u.gained),
        lost: cut(&u.lost),
        scoped_gained: cut(&u.scoped_gained),
        scoped_lost: cut(&u.scoped_lost),
        restrictions_lifted: cut(&u.restrictions_lifted),
        roles_gained: cut(&u.roles_gained),
        roles_lost: cut(&u.roles_lost),
    }
}

pub(super) async fn usage_of(tx: &Transaction<'_>, new: &Catalog) -> Result<Usage> {
    usage(tx, &group_keys(None, new)).await
}

pub(super) async fn insert_record(
    tx: &Transaction<'_>,
    c: &Catalog,
    how: &str,
    mappings: &serde_json::Value,
) -> Result<i64> {
    let groups: Vec<String> = c.groups().iter().map(|g| g.key.clone()).collect();
    let row = tx
        .one(
            "INSERT INTO catalogs (fingerprint, name, version, source, system_groups, how, mappings)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            &[
                &c.fingerprint,
                &c.name,
                &c.version,
                &c.source,
                &groups,
                &how,
                mappings,
            ],
        )
        .await?;
    Ok(row.get(0))
}

/// The stored-data part of an apply, across tenants.
pub(super) async fn rewrite(
    tx: &Transaction<'_>,
    new: &Catalog,
    usage: &Usage,
    m: &Mappings,
) -> Result<()> {
    let (from, to) = key_rewrites(new, usage, m);
    if !from.is_empty() {
        for (table, column, bump) in [
            ("users", "direct", ""),
            ("groups", "permissions", ", version = version + 1"),
        ] {
            tx.run(
                &format!(
                    "UPDATE {table} x SET {column} = ARRAY(
                         SELECT DISTINCT coalesce(m.to_key, d) FROM unnest(x.{column}) AS d
                         LEFT JOIN unnest($1::text[], $2::text[]) AS m(from_key, to_key) ON m.from_key = d
                         WHERE m.to_key IS DISTINCT FROM '' ORDER BY 1){bump}
                     WHERE x.{column} && $1::text[]"
                ),
                &[&from, &to],
            )
            .await?;
        }
        for (table, owner) in [
            ("user_scoped_grants", "user_id"),
            ("group_scoped_grants", "group_key"),
        ] {
            tx.run(
                &format!(
                    "INSERT INTO {table} (tenant_id, {owner}, permission, resource_type, resource_id)
                     SELECT s.tenant_id, s.{owner}, m.to_key, s.resource_type, s.resource_id
                     FROM {table} s JOIN unnest($1::text[], $2::text[]) AS m(from_key, to_key)
                         ON s.permission = m.from_key
                     WHERE m.to_key <> ''
                     ON CONFLICT DO NOTHING"
                ),
                &[&from, &to],
            )
            .await?;
            tx.run(
                &format!("DELETE FROM {table} WHERE permission = ANY($1)"),
                &[&from],
            )
            .await?;
        }
    }
    let types: Vec<&String> = m.drop_resource_types.iter().collect();
    if !types.is_empty() {
        for table in ["user_scoped_grants", "group_scoped_grants", "restrictions"] {
            tx.run(
                &format!("DELETE FROM {table} WHERE resource_type = ANY($1)"),
                &[&types],
            )
            .await?;
        }
    }
    for (from, to) in &m.rename_groups {
        let taken = tenants_where(
            tx,
            "SELECT DISTINCT g.tenant_id FROM groups g
             WHERE g.group_key = $1 AND (
                 EXISTS (SELECT 1 FROM groups o WHERE o.tenant_id = g.tenant_id AND o.group_key = $2)
                 OR EXISTS (SELECT 1 FROM memberships o WHERE o.tenant_id = g.tenant_id AND o.group_key = $2))
             ORDER BY 1",
            from,
            to,
        )
        .await?;
        if !taken.is_empty() {
            return Err(StoreError::Invalid(format!(
                "--rename-group {from}={to}: `{to}` is already used in tenant(s) {}",
                taken.join(", ")
            )));
        }
        tx.batch("SET CONSTRAINTS ALL IMMEDIATE").await?;
        tx.run(
            "INSERT INTO groups (tenant_id, group_key, name, description, permissions, version, member_count)
             SELECT tenant_id, $2, name, description, permissions, version + 1, member_count
             FROM groups WHERE group_key = $1",
            &[from, to],
        )
        .await?;
        for sql in [
            "UPDATE group_scoped_grants SET group_key = $2 WHERE group_key = $1",
            "UPDATE memberships m SET group_key = $2 WHERE m.group_key = $1
                 AND EXISTS (SELECT 1 FROM groups g WHERE g.tenant_id = m.tenant_id AND g.group_key = $1)",
            "DELETE FROM groups WHERE group_key = $1 AND $2 <> ''",
        ] {
            tx.run(sql, &[from, to]).await?;
        }
    }
    for (from, to) in &m.move_members {
        if new.group(to).is_none() {
            let missing = tenants_where(
                tx,
                "SELECT DISTINCT m.tenant_id FROM memberships m
                 WHERE m.group_key = $1
                   AND NOT EXISTS (SELECT 1 FROM groups g WHERE g.tenant_id = m.tenant_id AND g.group_key = $1)
                   AND NOT EXISTS (SELECT 1 FROM groups g WHERE g.tenant_id = m.tenant_id AND g.group_key = $2)
                 ORDER BY 1",
                from,
                to,
            )
            .await?;
            if !missing.is_empty() {
                return Err(StoreError::Invalid(format!(
                    "--move-members {from}={to}: `{to}` is neither a system group of the new catalog nor a custom group of tenants {}",
                    missing.join(", ")
                )));
            }
        }
        tx.run(
            "INSERT INTO memberships (tenant_id, user_id, group_key)
             SELECT m.tenant_id, m.user_id, $2 FROM memberships m
             WHERE m.group_key = $1
               AND NOT EXISTS (SELECT 1 FROM groups g WHERE g.tenant_id = m.tenant_id AND g.group_key = $1)
             ON CONFLICT DO NOTHING",
            &[from, to],
        )
        .await?;
    }
    let leaving: Vec<&String> = m.move_members.keys().chain(&m.drop_members).collect();
    if !leaving.is_empty() {
        tx.run(
            "DELETE FROM memberships m WHERE m.group_key = ANY($1)
               AND NOT EXISTS (SELECT 1 FROM groups g WHERE g.tenant_id = m.tenant_id AND g.group_key = m.group_key)",
            &[&leaving],
        )
        .await?;
    }
    Ok(())
}

/// The tenants `sql` finds for a mapping `from=to` ($1, $2): one id a row.
async fn tenants_where(
    tx: &Transaction<'_>,
    sql: &str,
    from: &str,
    to: &str,
) -> Result<Vec<String>> {
    let rows = tx.all(sql, &[&from, &to]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
