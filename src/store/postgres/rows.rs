//! Rows into the core's types, and the cache's loads: data and revision from one statement,
//! hence one snapshot.

use super::*;
use crate::store::cached::{GroupPage, Loader, UserPage};

impl PostgresStore {
    pub(super) fn perms(&self, keys: &[String]) -> PermSet {
        keys.iter()
            .filter_map(|k| {
                let p = self.catalog.resolve(k);
                if p.is_none() {
                    tracing::warn!(permission = %k, "stored permission is not in the catalog; ignored");
                }
                p
            })
            .collect()
    }

    pub(super) fn scoped(
        &self,
        perms: &[String],
        types: &[String],
        ids: &[String],
    ) -> Vec<ScopedGrant> {
        let mut out: Vec<ScopedGrant> = perms
            .iter()
            .zip(types)
            .zip(ids)
            .filter_map(|((p, t), id)| {
                Some(ScopedGrant {
                    permission: self.catalog.resolve(p)?,
                    resource: ResourceRef {
                        resource_type: self.catalog.resource_type(t)?,
                        id: id.clone(),
                    },
                })
            })
            .collect();
        out.sort();
        out
    }

    pub(super) fn restrictions(&self, types: &[String], ids: &[String]) -> Vec<Restriction> {
        let mut out: Vec<Restriction> = Vec::new();
        for (t, id) in types.iter().zip(ids) {
            let Some(resource_type) = self.catalog.resource_type(t) else {
                continue;
            };
            match out.iter_mut().find(|r| r.resource_type == resource_type) {
                Some(r) => {
                    r.ids.insert(id.clone());
                }
                None => out.push(Restriction {
                    resource_type,
                    ids: [id.clone()].into(),
                }),
            }
        }
        out.sort_by_key(|r| r.resource_type);
        out
    }

    pub(super) fn user_info(&self, row: &Row) -> UserInfo {
        let status: String = row.get("status");
        let mut info = UserInfo {
            user_id: row.get("user_id"),
            display_name: row.get("display_name"),
            email: row.get("email"),
            // Only a status known to be active lets a user in: anything else denies.
            status: if status == "active" {
                UserStatus::Active
            } else {
                UserStatus::Blocked
            },
            groups: row.get("groups"),
            direct: self.perms(&row.get::<_, Vec<String>>("direct")),
            scoped: self.scoped(
                &row.get::<_, Vec<String>>("sp"),
                &row.get::<_, Vec<String>>("st"),
                &row.get::<_, Vec<String>>("si"),
            ),
            restrictions: self.restrictions(
                &row.get::<_, Vec<String>>("rt"),
                &row.get::<_, Vec<String>>("ri"),
            ),
            effective: PermSet::new(),
        };
        // Admin reads also carry the custom groups' permissions: the effective set (and so
        // the roles) comes from the same snapshot as the rest of the user.
        if let Ok(group_perms) = row.try_get::<_, Vec<String>>("gp") {
            // The custom groups' permissions come as one union: every custom group reads it.
            let custom = Arc::new(GroupGrants {
                permissions: self.perms(&group_perms),
                ..GroupGrants::default()
            });
            let grants = Arc::new(UserGrants {
                status: info.status,
                groups: info.groups.clone(),
                direct: info.direct.clone(),
                ..UserGrants::default()
            });
            info.effective = self
                .catalog
                .subject(grants, |_| Some(custom.clone()))
                .effective();
        }
        info
    }

    pub(super) fn group_info(&self, row: &Row) -> GroupInfo {
        GroupInfo {
            def: GroupDef {
                key: row.get("group_key"),
                name: row.get("name"),
                description: row.get("description"),
                permissions: self.perms(&row.get::<_, Vec<String>>("permissions")),
                scoped: self.scoped(
                    &row.get::<_, Vec<String>>("sp"),
                    &row.get::<_, Vec<String>>("st"),
                    &row.get::<_, Vec<String>>("si"),
                ),
            },
            version: rev(row.get("version")),
            member_count: rev(row.get("members")),
        }
    }

    pub(super) fn keys(&self, set: &PermSet) -> Vec<String> {
        self.catalog.keys(set).map(str::to_owned).collect()
    }

    // ---- Cache loads: data and revision from one statement, hence one snapshot ----

    /// A user's grants and the grants of the custom groups it is a member of, in one round
    /// trip: the two statements are pipelined on one connection (the group statement finds
    /// the groups through the memberships itself). They are two snapshots, each with the
    /// tenant's revision; a group in the user's list but not in the group rows (a membership
    /// added in between) is simply not returned, and the caller loads it on its own.
    pub async fn load_user_and_groups(&self, tenant_id: &str, user_id: &str) -> Result<UserLoad> {
        let (row, group_rows) = self
            .read(move |c| async move {
                let (user_stmt, group_stmt) = tokio::try_join!(
                    c.prepare_cached(&USER_LOAD),
                    c.prepare_cached(&USER_GROUPS_LOAD)
                )?;
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
                    [&tenant_id, &user_id];
                tokio::try_join!(
                    c.query_opt(&user_stmt, &params),
                    c.query(&group_stmt, &params)
                )
            })
            .await?;
        // The user was read under this catalog record: this replica must agree with it.
        if let Some(r) = &row {
            self.admit(r.get("catalog_id")).await?;
        }
        let (user, revision) = self.loaded_user(tenant_id, row)?;
        let groups_revision = group_rows.first().map_or(revision, |r| rev(r.get(0)));
        let groups = group_rows.iter().map(|r| self.group_grants(r)).collect();
        Ok(UserLoad {
            user,
            revision,
            groups,
            groups_revision,
        })
    }

    /// The user (`None` when the tenant has no such user) and the tenant's revision from the
    /// user statement's row; no row means no such tenant.
    pub(super) fn loaded_user(
        &self,
        tenant_id: &str,
        row: Option<Row>,
    ) -> Result<(Option<UserGrants>, Revision)> {
        let row = row.ok_or_else(|| StoreError::TenantNotFound(tenant_id.to_owned()))?;
        let revision = rev(row.get(0));
        if !row.get::<_, bool>(1) {
            return Ok((None, revision));
        }
        let (_, grants) = user_grants(self.user_info(&row));
        Ok((Some(grants), revision))
    }

    pub(super) fn group_grants(&self, row: &Row) -> GroupGrants {
        let info = self.group_info(row);
        GroupGrants {
            key: info.def.key,
            permissions: info.def.permissions,
            scoped: info.def.scoped,
        }
    }

    /// The grants of the named custom groups that exist, and the tenant's revision, in one
    /// snapshot.
    pub async fn load_groups(
        &self,
        tenant_id: &str,
        keys: &[String],
    ) -> Result<(Vec<GroupGrants>, Revision)> {
        let sql = &format!(
            "SELECT t.revision, g.group_key IS NOT NULL AS found, {GROUP_COLUMNS}
             FROM tenants t LEFT JOIN groups g ON g.tenant_id = t.tenant_id AND g.group_key = ANY($2)
             WHERE t.tenant_id = $1"
        );
        let rows = self.read_prepared(sql, &[&tenant_id, &keys]).await?;
        let Some(first) = rows.first() else {
            return Err(StoreError::TenantNotFound(tenant_id.to_owned()));
        };
        let revision = rev(first.get(0));
        let groups = rows
            .iter()
            .filter(|r| r.get::<_, bool>(1))
            .map(|r| self.group_grants(r))
            .collect();
        Ok((groups, revision))
    }

    /// One page of every tenant's users, ordered by (tenant, user) and strictly after `after`,
    /// each with its tenant's revision: the bulk read behind cache warm-up.
    pub async fn load_users_page(&self, after: &(String, String), limit: i64) -> Result<UserPage> {
        let sql = &format!(
            "SELECT t.revision, u.tenant_id, {USER_COLUMNS}
             FROM users u JOIN tenants t ON t.tenant_id = u.tenant_id
             WHERE (u.tenant_id, u.user_id) > ($1, $2)
             ORDER BY u.tenant_id, u.user_id LIMIT $3"
        );
        let rows = self
            .read_prepared(sql, &[&after.0, &after.1, &limit])
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let (user_id, grants) = user_grants(self.user_info(r));
                (r.get(1), user_id, grants, rev(r.get(0)))
            })
            .collect())
    }

    /// One page of every tenant's custom groups, like [`Self::load_users_page`].
    pub async fn load_groups_page(
        &self,
        after: &(String, String),
        limit: i64,
    ) -> Result<GroupPage> {
        let sql = &format!(
            "SELECT t.revision, g.tenant_id, {GROUP_COLUMNS}
             FROM groups g JOIN tenants t ON t.tenant_id = g.tenant_id
             WHERE (g.tenant_id, g.group_key) > ($1, $2)
             ORDER BY g.tenant_id, g.group_key LIMIT $3"
        );
        let rows = self
            .read_prepared(sql, &[&after.0, &after.1, &limit])
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(1), self.group_grants(r), rev(r.get(0))))
            .collect())
    }

    /// Builds a subject from the database alone: the user and its custom groups in one round
    /// trip, and, in the rare case a membership landed between the two statements, that group
    /// read on its own.
    pub async fn load_subject(
        &self,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<(Subject, Revision)> {
        let load = self.load_user_and_groups(tenant_id, user_id).await?;
        let Some(user) = load.user else {
            return Ok((Subject::default(), load.revision));
        };
        let mut revision = load.revision.min(load.groups_revision);
        let missed: Vec<String> = user
            .groups
            .iter()
            .filter(|k| {
                self.catalog.group(k).is_none() && !load.groups.iter().any(|g| &g.key == *k)
            })
            .cloned()
            .collect();
        let mut loaded = load.groups;
        if !missed.is_empty() {
            let (more, more_rev) = self.load_groups(tenant_id, &missed).await?;
            revision = revision.min(more_rev);
            loaded.extend(more);
        }
        let subject = self.catalog.subject(Arc::new(user), |k| {
            loaded.iter().find(|g| g.key == k).cloned().map(Arc::new)
        });
        Ok((subject, revision))
    }
}

/// A user's id and grants, from its row as read.
pub(super) fn user_grants(info: UserInfo) -> (String, UserGrants) {
    (
        info.user_id,
        UserGrants {
            status: info.status,
            groups: info.groups,
            direct: info.direct,
            scoped: info.scoped,
            restrictions: info.restrictions,
        },
    )
}

#[async_trait]
impl Loader for PostgresStore {
    async fn load_user_and_groups(&self, tenant_id: &str, user_id: &str) -> Result<UserLoad> {
        PostgresStore::load_user_and_groups(self, tenant_id, user_id).await
    }

    async fn load_groups(
        &self,
        tenant_id: &str,
        keys: &[String],
    ) -> Result<(Vec<GroupGrants>, Revision)> {
        PostgresStore::load_groups(self, tenant_id, keys).await
    }

    async fn load_subject(&self, tenant_id: &str, user_id: &str) -> Result<(Subject, Revision)> {
        PostgresStore::load_subject(self, tenant_id, user_id).await
    }

    async fn load_users_page(&self, after: &(String, String), limit: i64) -> Result<UserPage> {
        PostgresStore::load_users_page(self, after, limit).await
    }

    async fn load_groups_page(&self, after: &(String, String), limit: i64) -> Result<GroupPage> {
        PostgresStore::load_groups_page(self, after, limit).await
    }

    async fn recheck_catalog(&self) -> Result<()> {
        PostgresStore::recheck_catalog(self).await
    }

    fn listen_config(&self) -> &tokio_postgres::Config {
        self.pg_config()
    }

    fn catalog_guard(&self) -> &Arc<CatalogGuard> {
        self.guard()
    }

    fn pool_status(&self) -> deadpool_postgres::Status {
        PostgresStore::pool_status(self)
    }
}
