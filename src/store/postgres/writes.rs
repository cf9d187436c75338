//! The writes, one method each, behind `Store::write`, each inside the one transaction frame.

use super::*;

type Tx<'t> = deadpool_postgres::Transaction<'t>;

/// Where a write's statements run: its transaction and its tenant.
type In<'a, 't> = (&'a Tx<'t>, &'a str);

impl PostgresStore {
    /// Carries out `write` in the one transaction frame: the one place a `Write` becomes this
    /// store's statements.
    pub(super) async fn carry_out(
        &self,
        tenant_id: &str,
        ctx: &WriteCtx,
        write: Write<'_>,
    ) -> Result<Committed<Written>> {
        let op = Op::of(&write);
        let write = &write;
        self.frame(
            tenant_id,
            ctx,
            async |tx| self.plan(tx, tenant_id, write, op).await,
            async |tx, touched| self.statements(tx, tenant_id, ctx, write, touched).await,
        )
        .await
    }

    /// What the write touches beyond what the request says, read after the tenant's lock: the
    /// members a duplicate copies (the audit record and the preview name each of them).
    async fn plan(
        &self,
        tx: &Tx<'_>,
        tenant_id: &str,
        write: &Write<'_>,
        mut op: Op,
    ) -> Result<Op> {
        if let Write::DuplicateGroup {
            members_of: Some(src),
            ..
        } = write
        {
            op.touched.users = tx
                .all(
                    "SELECT user_id FROM memberships WHERE tenant_id = $1 AND group_key = $2 ORDER BY user_id",
                    &[&tenant_id, src],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
        }
        Ok(op)
    }

    /// The write's own statements, inside the frame.
    async fn statements(
        &self,
        tx: &Tx<'_>,
        tenant_id: &str,
        ctx: &WriteCtx,
        write: &Write<'_>,
        touched: &crate::store::Touched,
    ) -> Result<Written> {
        let t = (tx, tenant_id);
        Ok(match write {
            Write::UpsertUser {
                user_id,
                display_name,
                email,
            } => Written::User(self.upsert_user(t, user_id, display_name, email).await?),
            Write::ImportUsers { rows } => {
                self.import_users(t, rows).await?;
                Written::Nothing
            }
            Write::SetUserStatus { user_id, status } => {
                Written::User(self.set_user_status(t, user_id, *status).await?)
            }
            Write::CreateGroup { def } => {
                Written::Group(self.create_group(t, def.clone(), 0).await?)
            }
            Write::DuplicateGroup { def, members_of } => {
                let copied = touched.users.len() as u64;
                let info = self.create_group(t, def.clone(), copied).await?;
                if let Some(src) = members_of {
                    tx.run(
                        "INSERT INTO memberships (tenant_id, user_id, group_key)
                         SELECT tenant_id, user_id, $3 FROM memberships WHERE tenant_id = $1 AND group_key = $2",
                        &[&tenant_id, src, &def.key],
                    )
                    .await?;
                }
                Written::Group(info)
            }
            Write::UpdateGroup {
                key,
                patch,
                expected_version,
            } => Written::Group(
                self.update_group(t, ctx, key, patch, *expected_version)
                    .await?,
            ),
            Write::DeleteGroup {
                key,
                expected_version,
            } => {
                self.delete_group(t, key, *expected_version).await?;
                Written::Nothing
            }
            Write::AddMembers { group, user_ids } => {
                self.add_members(t, *group, user_ids).await?;
                Written::Nothing
            }
            Write::RemoveMembers { group, user_ids } => {
                self.remove_members(t, *group, user_ids).await?;
                Written::Nothing
            }
            Write::Grant { user_id, grants } => {
                self.grant(t, user_id, grants).await?;
                Written::Nothing
            }
            Write::Revoke { user_id, grants } => {
                self.revoke(t, user_id, grants).await?;
                Written::Nothing
            }
            Write::SetRestriction {
                user_id,
                resource_type,
                ids,
            } => {
                self.set_restriction(t, user_id, *resource_type, ids.clone())
                    .await?;
                Written::Nothing
            }
        })
    }

    async fn upsert_user(
        &self,
        (tx, tenant_id): In<'_, '_>,
        user_id: &str,
        display_name: &str,
        email: &str,
    ) -> Result<UserInfo> {
        tx.run(
            "INSERT INTO users (tenant_id, user_id, display_name, email) VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant_id, user_id) DO UPDATE SET display_name = $3, email = $4",
            &[&tenant_id, &user_id, &display_name, &email],
        )
        .await?;
        self.read_user(tx, tenant_id, user_id).await
    }

    async fn import_users(&self, (tx, tenant_id): In<'_, '_>, rows: &[ImportRow]) -> Result<()> {
        let custom: BTreeSet<&String> = rows
            .iter()
            .flat_map(|r| &r.groups)
            .filter(|g| self.catalog.group(g).is_none())
            .collect();
        let custom: Vec<&String> = custom.into_iter().collect();
        let found: BTreeSet<String> = tx
            .all(
                "SELECT group_key FROM groups WHERE tenant_id = $1 AND group_key = ANY($2) FOR SHARE",
                &[&tenant_id, &custom],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if let Some(missing) = custom.iter().find(|g| !found.contains(g.as_str())) {
            return Err(StoreError::GroupNotFound((*missing).clone()));
        }
        for r in rows {
            tx.run(
                "INSERT INTO users (tenant_id, user_id, display_name, email, direct) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (tenant_id, user_id) DO UPDATE SET
                     display_name = coalesce(nullif($3, ''), users.display_name),
                     email = coalesce(nullif($4, ''), users.email),
                     direct = ARRAY(SELECT DISTINCT x FROM unnest(users.direct || $5::text[]) x ORDER BY 1)",
                &[&tenant_id, &r.user_id, &r.display_name, &r.email, &self.keys(&r.direct)],
            )
            .await?;
            tx.run(
                "INSERT INTO memberships (tenant_id, user_id, group_key)
                 SELECT $1, $2, unnest($3::text[]) ON CONFLICT DO NOTHING",
                &[&tenant_id, &r.user_id, &r.groups],
            )
            .await?;
        }
        Ok(())
    }

    async fn set_user_status(
        &self,
        (tx, tenant_id): In<'_, '_>,
        user_id: &str,
        status: UserStatus,
    ) -> Result<UserInfo> {
        tx.run(
            "INSERT INTO users (tenant_id, user_id, status) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id, user_id) DO UPDATE SET status = $3",
            &[&tenant_id, &user_id, &status_text(status)],
        )
        .await?;
        self.read_user(tx, tenant_id, user_id).await
    }

    async fn create_group(
        &self,
        (tx, tenant_id): In<'_, '_>,
        def: GroupDef,
        members: u64,
    ) -> Result<GroupInfo> {
        self.insert_group(tx, tenant_id, &def).await?;
        Ok(GroupInfo {
            def,
            version: 1,
            member_count: members,
        })
    }

    async fn update_group(
        &self,
        (tx, tenant_id): In<'_, '_>,
        ctx: &WriteCtx,
        key: &str,
        patch: &GroupPatch,
        expected_version: Option<u64>,
    ) -> Result<GroupInfo> {
        let row = locked_group(
            (tx, tenant_id),
            "SELECT version, permissions FROM groups WHERE tenant_id = $1 AND group_key = $2 FOR UPDATE",
            key,
            expected_version,
        )
        .await?;
        // A stored key the catalog does not know is never dropped by an edit.
        let kept = rules::kept_on_edit(&self.catalog, ctx.actor.is_some());
        let kept_keys: Vec<String> = row
            .get::<_, Vec<String>>(1)
            .into_iter()
            .filter(|k| self.catalog.resolve(k).is_none_or(|p| kept.contains(p)))
            .collect();
        let permissions = patch.permissions.as_ref().map(|p| {
            let mut keys = self.keys(p);
            keys.extend(kept_keys.iter().cloned());
            keys.sort();
            keys.dedup();
            keys
        });
        tx.run(
            "UPDATE groups SET name = coalesce($3, name), description = coalesce($4, description),
                    permissions = coalesce($5, permissions), version = version + 1
             WHERE tenant_id = $1 AND group_key = $2",
            &[
                &tenant_id,
                &key,
                &patch.name,
                &patch.description,
                &permissions,
            ],
        )
        .await?;
        if let Some(scoped) = &patch.scoped {
            let keep: Vec<String> = self.keys(&kept);
            tx.run(
                "DELETE FROM group_scoped_grants WHERE tenant_id = $1 AND group_key = $2
                 AND permission <> ALL($3)",
                &[&tenant_id, &key, &keep],
            )
            .await?;
            self.insert_group_scoped(tx, tenant_id, key, scoped).await?;
        }
        let row = tx
            .one(
                &format!("SELECT {GROUP_COLUMNS} FROM groups g WHERE g.tenant_id = $1 AND g.group_key = $2"),
                &[&tenant_id, &key],
            )
            .await?;
        let info = self.group_info(&row);
        Ok(info)
    }

    async fn delete_group(
        &self,
        (tx, tenant_id): In<'_, '_>,
        key: &str,
        expected_version: Option<u64>,
    ) -> Result<()> {
        let row = locked_group(
            (tx, tenant_id),
            "SELECT version, (SELECT count(*) FROM memberships m WHERE m.tenant_id = $1 AND m.group_key = $2)
             FROM groups WHERE tenant_id = $1 AND group_key = $2 FOR UPDATE",
            key,
            expected_version,
        )
        .await?;
        rules::check_empty(key, rev(row.get(1)))?;
        tx.run(
            "DELETE FROM groups WHERE tenant_id = $1 AND group_key = $2",
            &[&tenant_id, &key],
        )
        .await?;
        Ok(())
    }

    async fn add_members(
        &self,
        (tx, tenant_id): In<'_, '_>,
        group: GroupRef<'_>,
        user_ids: &[String],
    ) -> Result<()> {
        check_group(tx, tenant_id, group).await?;
        ensure_users(tx, tenant_id, user_ids).await?;
        tx.run(
            "INSERT INTO memberships (tenant_id, user_id, group_key)
             SELECT $1, unnest($2::text[]), $3 ON CONFLICT DO NOTHING",
            &[&tenant_id, &user_ids, &group.key()],
        )
        .await?;
        Ok(())
    }

    async fn remove_members(
        &self,
        (tx, tenant_id): In<'_, '_>,
        group: GroupRef<'_>,
        user_ids: &[String],
    ) -> Result<()> {
        check_group(tx, tenant_id, group).await?;
        tx.run(
            "DELETE FROM memberships WHERE tenant_id = $1 AND group_key = $2 AND user_id = ANY($3)",
            &[&tenant_id, &group.key(), &user_ids],
        )
        .await?;
        Ok(())
    }

    async fn grant(
        &self,
        (tx, tenant_id): In<'_, '_>,
        user_id: &str,
        grants: &Grants,
    ) -> Result<()> {
        ensure_users(tx, tenant_id, &[user_id.to_owned()]).await?;
        self.run_grants(
            (tx, tenant_id),
            user_id,
            grants,
            "UPDATE users SET direct = ARRAY(SELECT DISTINCT x FROM unnest(direct || $3::text[]) x ORDER BY 1)
             WHERE tenant_id = $1 AND user_id = $2",
            "INSERT INTO user_scoped_grants (tenant_id, user_id, permission, resource_type, resource_id)
             SELECT $1, $2, * FROM unnest($3::text[], $4::text[], $5::text[]) ON CONFLICT DO NOTHING",
        )
        .await
    }

    async fn revoke(
        &self,
        (tx, tenant_id): In<'_, '_>,
        user_id: &str,
        grants: &Grants,
    ) -> Result<()> {
        let sql = "SELECT 1 FROM users WHERE tenant_id = $1 AND user_id = $2";
        if tx.opt(sql, &[&tenant_id, &user_id]).await?.is_none() {
            return Err(StoreError::UserNotFound(user_id.to_owned()));
        }
        self.run_grants(
            (tx, tenant_id),
            user_id,
            grants,
            "UPDATE users SET direct = ARRAY(SELECT x FROM unnest(direct) x WHERE x <> ALL($3::text[]) ORDER BY 1)
             WHERE tenant_id = $1 AND user_id = $2",
            "DELETE FROM user_scoped_grants WHERE tenant_id = $1 AND user_id = $2
             AND (permission, resource_type, resource_id) IN
                 (SELECT * FROM unnest($3::text[], $4::text[], $5::text[]))",
        )
        .await
    }

    /// Runs the statement for the kind of `grants`: `unscoped` with the tenant ($1), the user
    /// ($2) and the permission keys ($3), or `scoped` as [`run_scoped`] runs it.
    async fn run_grants(
        &self,
        (tx, tenant_id): In<'_, '_>,
        user_id: &str,
        grants: &Grants,
        unscoped: &str,
        scoped: &str,
    ) -> Result<()> {
        match grants {
            Grants::Unscoped(set) => {
                tx.run(unscoped, &[&tenant_id, &user_id, &self.keys(set)])
                    .await?;
                Ok(())
            }
            Grants::Scoped(list) => {
                run_scoped(tx, &self.catalog, scoped, (tenant_id, user_id), list).await
            }
        }
    }

    async fn set_restriction(
        &self,
        (tx, tenant_id): In<'_, '_>,
        user_id: &str,
        resource_type: ResourceTypeId,
        ids: Option<BTreeSet<String>>,
    ) -> Result<()> {
        ensure_users(tx, tenant_id, &[user_id.to_owned()]).await?;
        let type_key = self.catalog.resource_type_key(resource_type);
        match ids {
            Some(ids) => {
                let ids: Vec<String> = ids.into_iter().collect();
                tx.run(
                    "INSERT INTO restrictions (tenant_id, user_id, resource_type, resource_ids) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (tenant_id, user_id, resource_type) DO UPDATE SET resource_ids = $4",
                    &[&tenant_id, &user_id, &type_key, &ids],
                )
                .await?;
            }
            None => {
                tx.run(
                    "DELETE FROM restrictions WHERE tenant_id = $1 AND user_id = $2 AND resource_type = $3",
                    &[&tenant_id, &user_id, &type_key],
                )
                .await?;
            }
        }
        Ok(())
    }
}

/// The group's row locked by `sql` (tenant $1, key $2; the version first), after the check of
/// the version the caller expects.
async fn locked_group(
    (tx, tenant_id): In<'_, '_>,
    sql: &str,
    key: &str,
    expected_version: Option<u64>,
) -> Result<Row> {
    let row = tx
        .opt(sql, &[&tenant_id, &key])
        .await?
        .ok_or_else(|| StoreError::GroupNotFound(key.to_owned()))?;
    rules::check_version(key, expected_version, rev(row.get(0)))?;
    Ok(row)
}
