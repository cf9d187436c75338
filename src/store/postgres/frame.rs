//! The frame of every write: the catalog lock and the tenant's lock, the admin rule decided
//! under them, the audit record, and the commit with its change log and NOTIFY.

use super::*;

/// Subjects by user id, and the grants of the custom groups they were built with by key.
type Subjects = (
    std::collections::HashMap<String, Subject>,
    std::collections::HashMap<String, Arc<GroupGrants>>,
);

impl PostgresStore {
    /// Starts a tenant's write: bumps and locks its revision row, then decides the write's
    /// admin rule on state read after the lock, in this transaction. Every write of the tenant
    /// takes the same lock first, so what the rule read cannot change before this write
    /// commits: the decision and the write are one step in revision order.
    pub(super) async fn begin(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        tenant_id: &str,
        ctx: &WriteCtx,
    ) -> Result<Revision> {
        // Shared with every other write; a catalog record or apply holds it exclusively.
        tx.run("SELECT pg_advisory_xact_lock_shared($1)", &[&CATALOG_LOCK])
            .await?;
        let (revision, catalog_id) = lock_tenant(tx, tenant_id).await?;
        if catalog_id != self.guard.verified() {
            self.guard.check(tx, catalog_id).await?;
        }
        // Decided with the newest catalog or not at all: a replica behind a rollout writes
        // nothing (its groups may give less than the recorded catalog's).
        if let Some(r) = self.guard.write_refusal() {
            return Err(StoreError::CatalogMismatch(r));
        }
        if let Some(actor) = &ctx.actor {
            let facts = self.facts(tx, tenant_id, actor, &ctx.rule).await?;
            ctx.authorize(&self.catalog, &facts)?;
        }
        Ok(revision)
    }

    /// What an admin rule decides on, read in the write's transaction: the actor, then what
    /// the rule needs given the actor.
    pub(super) async fn facts(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        tenant_id: &str,
        actor: &str,
        rule: &Rule,
    ) -> Result<Facts> {
        let named: Vec<String> = rule.groups().into_iter().collect();
        let (mut users, groups) = self
            .subjects_in(tx, tenant_id, &[actor.to_owned()], &[], &named)
            .await?;
        let actor = users.remove(actor).unwrap_or_default();
        let needs = rule.needs(&self.catalog, &actor, &groups);
        let ids: Vec<String> = needs.users.into_iter().collect();
        let members_of: Vec<String> = needs.members_of.into_iter().collect();
        let groups: Vec<String> = needs.groups.into_iter().collect();
        let (users, groups) = self
            .subjects_in(tx, tenant_id, &ids, &members_of, &groups)
            .await?;
        Ok(Facts {
            actor,
            users,
            groups,
        })
    }

    /// The subjects of the named users and of every member of `members_of`, and the grants of
    /// their custom groups and of the `groups` named, in the transaction's view.
    pub(super) async fn subjects_in(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        tenant_id: &str,
        ids: &[String],
        members_of: &[String],
        groups: &[String],
    ) -> Result<Subjects> {
        self.subjects_with(tx, tenant_id, USER_COLUMNS, ids, members_of, groups)
            .await
    }

    /// [`Self::subjects_in`] with the user columns given.
    pub(super) async fn subjects_with(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        tenant_id: &str,
        columns: &str,
        ids: &[String],
        members_of: &[String],
        groups: &[String],
    ) -> Result<Subjects> {
        // Separate statements by what is asked: an `OR` of the two would keep the planner from
        // the primary key and scan the tenant's users.
        let members =
            "SELECT m.user_id FROM memberships m WHERE m.tenant_id = $1 AND m.group_key = ANY($2)";
        let statement: Option<(String, Vec<&(dyn ToSql + Sync)>)> =
            match (ids.is_empty(), members_of.is_empty()) {
                (true, true) => None,
                (false, true) => Some((
                    format!(
                        "SELECT {columns} FROM users u WHERE u.tenant_id = $1 AND u.user_id = ANY($2)"
                    ),
                    vec![&tenant_id, &ids],
                )),
                (true, false) => Some((
                    format!(
                        "SELECT {columns} FROM users u WHERE u.tenant_id = $1 AND u.user_id IN ({members})"
                    ),
                    vec![&tenant_id, &members_of],
                )),
                (false, false) => Some((
                    format!(
                        "SELECT {columns} FROM users u WHERE u.tenant_id = $1 AND u.user_id = ANY($3)
                         UNION SELECT {columns} FROM users u WHERE u.tenant_id = $1 AND u.user_id IN ({members})"
                    ),
                    vec![&tenant_id, &members_of, &ids],
                )),
            };
        let rows = match statement {
            Some((sql, params)) => tx.all(&sql, &params).await?,
            None => Vec::new(),
        };
        let users: Vec<UserInfo> = rows.iter().map(|r| self.user_info(r)).collect();
        let mut keys: BTreeSet<&str> = groups.iter().map(String::as_str).collect();
        keys.extend(
            users
                .iter()
                .flat_map(|u| u.groups.iter().map(String::as_str)),
        );
        let custom: Vec<&str> = keys
            .into_iter()
            .filter(|k| self.catalog.group(k).is_none())
            .collect();
        let loaded: std::collections::HashMap<String, Arc<GroupGrants>> = if custom.is_empty() {
            std::collections::HashMap::new()
        } else {
            group_rows(tx, tenant_id, &custom)
                .await?
                .iter()
                .map(|r| {
                    let g = self.group_grants(r);
                    (g.key.clone(), Arc::new(g))
                })
                .collect()
        };
        let subjects = users
            .into_iter()
            .map(|u| {
                let (user_id, grants) = rows::user_grants(u);
                let subject = self
                    .catalog
                    .subject(Arc::new(grants), |k| loaded.get(k).cloned());
                (user_id, subject)
            })
            .collect();
        Ok((subjects, loaded))
    }

    /// Starts the audit record of a write: what it aims at and the state of what it touches,
    /// read inside the transaction after the tenant's revision row is locked.
    pub(super) async fn record(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        tenant_id: &str,
        operation: &'static str,
        target: String,
        touched: Touched,
    ) -> Result<Record> {
        let before = self.snapshot(tx, tenant_id, &touched).await?;
        let limit = to_i64(PREVIEW_LIMIT as u64 + 1);
        let mut ids: BTreeSet<String> = touched.users.iter().cloned().collect();
        if !touched.groups.is_empty() {
            let rows = tx
                // Per group, the first members in index order (no per-member work however
                // large the group), then the first of their union.
                .all(
                    "SELECT DISTINCT first.user_id FROM unnest($2::text[]) AS touched(group_key),
                         LATERAL (SELECT m.user_id FROM memberships m
                                  WHERE m.tenant_id = $1 AND m.group_key = touched.group_key
                                  ORDER BY m.user_id LIMIT $3) AS first
                     ORDER BY 1 LIMIT $3",
                    &[&tenant_id, &touched.groups, &limit],
                )
                .await?;
            ids.extend(rows.iter().map(|r| r.get::<_, String>(0)));
        }
        let truncated = ids.len() > PREVIEW_LIMIT;
        let affected: Vec<String> = ids.into_iter().take(PREVIEW_LIMIT).collect();
        let effective_before = self
            .effective(tx, tenant_id, &affected, &touched.users)
            .await?;
        Ok(Record {
            operation,
            target,
            touched,
            before,
            affected,
            truncated,
            effective_before,
        })
    }

    /// Each user's access inside the transaction (empty when blocked or unknown). The users the
    /// write touches itself (`own`) are read whole; the others (members of an edited group) are
    /// read without their own scoped grants and limits, which the write cannot change, so a
    /// large group's edit costs one light row per listed member.
    pub(super) async fn effective(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        tenant_id: &str,
        users: &[String],
        own: &[String],
    ) -> Result<BTreeMap<String, Access>> {
        let mut out: BTreeMap<String, Access> = users
            .iter()
            .map(|u| (u.clone(), Access::default()))
            .collect();
        if users.is_empty() {
            return Ok(out);
        }
        let (whole, light): (Vec<String>, Vec<String>) =
            users.iter().cloned().partition(|u| own.contains(u));
        for (ids, columns) in [(whole, USER_COLUMNS), (light, USER_GROUP_COLUMNS)] {
            if ids.is_empty() {
                continue;
            }
            let (subjects, _) = self
                .subjects_with(tx, tenant_id, columns, &ids, &[], &[])
                .await?;
            for (id, subject) in subjects {
                out.insert(id, Access::of(&subject));
            }
        }
        Ok(out)
    }

    pub(super) async fn snapshot(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        tenant_id: &str,
        touched: &Touched,
    ) -> Result<serde_json::Value> {
        let mut users: Vec<(String, Option<UserInfo>)> = Vec::new();
        if !touched.all_users && !touched.users.is_empty() {
            let rows = tx
                .all(
                    &format!("SELECT {USER_COLUMNS} FROM users u WHERE u.tenant_id = $1 AND u.user_id = ANY($2)"),
                    &[&tenant_id, &touched.users],
                )
                .await?;
            let found: Vec<UserInfo> = rows.iter().map(|r| self.user_info(r)).collect();
            users = each_found(&touched.users, &found, |u| &u.user_id);
        }
        let mut groups: Vec<(String, Option<GroupInfo>)> = Vec::new();
        if !touched.groups.is_empty() {
            let rows = group_rows(tx, tenant_id, &touched.groups).await?;
            let found: Vec<GroupInfo> = rows.iter().map(|r| self.group_info(r)).collect();
            groups = each_found(&touched.groups, &found, |g| &g.def.key);
        }
        Ok(crate::store::snapshot_json(&self.catalog, &users, &groups))
    }

    /// The one frame of every tenant write: a checked-out connection, a transaction, the
    /// tenant's lock and the admin rule ([`Self::begin`]), the audit record of what the op
    /// touches as it was, then `body`, then the preview, the change log, NOTIFY and commit
    /// ([`Self::commit`]); a dry run rolls back after the preview.
    /// `plan` gives the write's `Op`, and may read state under the lock (the members a
    /// duplicate copies); `body` sees what the op touches.
    pub(super) async fn frame<T>(
        &self,
        tenant_id: &str,
        ctx: &WriteCtx,
        plan: impl AsyncFnOnce(&deadpool_postgres::Transaction<'_>) -> Result<Op>,
        body: impl AsyncFnOnce(&deadpool_postgres::Transaction<'_>, &Touched) -> Result<T>,
    ) -> Result<Committed<T>> {
        let mut client = self.write_client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let revision = self.begin(&tx, tenant_id, ctx).await?;
        let op = plan(&tx).await?;
        let record = self
            .record(&tx, tenant_id, op.name, op.target, op.touched)
            .await?;
        let value = body(&tx, &record.touched).await?;
        Ok(self
            .commit(tx, tenant_id, revision, ctx, record)
            .await?
            .map(|()| value))
    }

    /// A user's whole row inside a write.
    pub(super) async fn read_user(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<UserInfo> {
        let row = tx
            .one(
                &format!(
                    "SELECT {USER_COLUMNS} FROM users u WHERE u.tenant_id = $1 AND u.user_id = $2"
                ),
                &[&tenant_id, &user_id],
            )
            .await?;
        Ok(self.user_info(&row))
    }

    /// Finishes a tenant's write: computes the preview, then either rolls back (a dry run:
    /// returns the revision it was computed at) or appends the change with its audit record,
    /// sends one NOTIFY (delivered only on commit) and commits.
    pub(super) async fn commit(
        &self,
        tx: deadpool_postgres::Transaction<'_>,
        tenant_id: &str,
        revision: Revision,
        ctx: &WriteCtx,
        record: Record,
    ) -> Result<Committed<()>> {
        let effective_after = self
            .effective(&tx, tenant_id, &record.affected, &record.touched.users)
            .await?;
        let preview = crate::store::preview(
            &self.catalog,
            &record.effective_before,
            &effective_after,
            record.truncated,
        );
        if ctx.dry_run {
            tx.rollback().await.map_err(pg)?;
            return Ok(Committed {
                value: (),
                revision: revision - 1,
                preview,
                touched: record.touched,
            });
        }
        let after = self.snapshot(&tx, tenant_id, &record.touched).await?;
        let touched = &record.touched;
        tx.run(
            "INSERT INTO changes (tenant_id, revision, operation, users, groups, all_users, actor, target, before, after)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &tenant_id,
                &to_i64(revision),
                &record.operation,
                &touched.users,
                &touched.groups,
                &touched.all_users,
                &ctx.actor,
                &record.target,
                &record.before,
                &after,
            ],
        )
        .await?;
        let payload = Notice::new(tenant_id, revision, touched).encode();
        tx.run("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
            .await?;
        tx.commit().await.map_err(pg)?;
        Ok(Committed {
            value: (),
            revision,
            preview,
            touched: record.touched,
        })
    }

    /// Inserts a new custom group with its scoped grants; `GroupExists` when the key is taken.
    pub(super) async fn insert_group(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        tenant_id: &str,
        def: &GroupDef,
    ) -> Result<()> {
        let inserted = tx
            .run(
                "INSERT INTO groups (tenant_id, group_key, name, description, permissions)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, group_key) DO NOTHING",
                &[
                    &tenant_id,
                    &def.key,
                    &def.name,
                    &def.description,
                    &self.keys(&def.permissions),
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::GroupExists(def.key.clone()));
        }
        self.insert_group_scoped(tx, tenant_id, &def.key, &def.scoped)
            .await
    }

    pub(super) async fn insert_group_scoped(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        tenant_id: &str,
        key: &str,
        scoped: &[ScopedGrant],
    ) -> Result<()> {
        run_scoped(
            tx,
            &self.catalog,
            "INSERT INTO group_scoped_grants (tenant_id, group_key, permission, resource_type, resource_id)
             SELECT $1, $2, * FROM unnest($3::text[], $4::text[], $5::text[]) ON CONFLICT DO NOTHING",
            (tenant_id, key),
            scoped,
        )
        .await
    }
}

/// The rows ([`GROUP_COLUMNS`]) of the tenant's custom groups whose keys are among `keys`.
async fn group_rows(
    tx: &deadpool_postgres::Transaction<'_>,
    tenant_id: &str,
    keys: &(dyn ToSql + Sync),
) -> Result<Vec<Row>> {
    tx.all(
        &format!(
            "SELECT {GROUP_COLUMNS} FROM groups g WHERE g.tenant_id = $1 AND g.group_key = ANY($2)"
        ),
        &[&tenant_id, keys],
    )
    .await
}

/// Each key with what was found for it (`None`: nothing was).
fn each_found<T: Clone>(
    keys: &[String],
    found: &[T],
    key: impl Fn(&T) -> &String,
) -> Vec<(String, Option<T>)> {
    keys.iter()
        .map(|k| (k.clone(), found.iter().find(|x| key(x) == k).cloned()))
        .collect()
}
