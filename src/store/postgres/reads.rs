//! The `Store` (the one write entry point, subjects, readiness) and its `Records`.

use super::*;
use crate::store::Records;

#[async_trait]
impl Store for PostgresStore {
    async fn write(
        &self,
        tenant_id: &str,
        ctx: &WriteCtx,
        write: Write<'_>,
    ) -> Result<Committed<Written>> {
        self.carry_out(tenant_id, ctx, write).await
    }

    async fn create_tenant(&self, tenant_id: &str, display_name: &str) -> Result<TenantInfo> {
        let client = self.client().await?;
        let row = client
            .opt(
                "INSERT INTO tenants (tenant_id, display_name) VALUES ($1, $2)
                 ON CONFLICT (tenant_id) DO NOTHING RETURNING created_at, revision",
                &[&tenant_id, &display_name],
            )
            .await?
            .ok_or_else(|| StoreError::TenantExists(tenant_id.to_owned()))?;
        Ok(TenantInfo {
            tenant_id: tenant_id.to_owned(),
            display_name: display_name.to_owned(),
            created_at: row.get(0),
            revision: rev(row.get(1)),
        })
    }

    async fn subject(
        &self,
        tenant_id: &str,
        user_id: &str,
        consistency: Consistency,
    ) -> Result<(Subject, Revision)> {
        let (subject, revision) = self.load_subject(tenant_id, user_id).await?;
        rules::check_fresh(consistency, revision)?;
        Ok((subject, revision))
    }

    fn commits(&self) -> CommitSignal {
        self.commits.subscribe()
    }

    fn readiness(&self) -> Readiness {
        Readiness {
            ready: true,
            reason: String::new(),
        }
    }

    fn records(&self) -> &dyn Records {
        self
    }
}

#[async_trait]
impl Records for PostgresStore {
    async fn get_tenant(&self, tenant_id: &str) -> Result<TenantInfo> {
        let row = self
            .read_opt(
                "SELECT display_name, created_at, revision FROM tenants WHERE tenant_id = $1",
                &[&tenant_id],
            )
            .await?
            .ok_or_else(|| StoreError::TenantNotFound(tenant_id.to_owned()))?;
        Ok(TenantInfo {
            tenant_id: tenant_id.to_owned(),
            display_name: row.get(0),
            created_at: row.get(1),
            revision: rev(row.get(2)),
        })
    }

    async fn list_tenants(&self, page: &PageRequest) -> Result<Page<TenantInfo>> {
        let (a, l) = (after(page), limit(page));
        let rows = self
            .read_all(
                "SELECT tenant_id, display_name, created_at, revision FROM tenants
                 WHERE tenant_id > $1 ORDER BY tenant_id LIMIT $2",
                &[&a, &l],
            )
            .await?;
        let items = rows
            .iter()
            .map(|r| TenantInfo {
                tenant_id: r.get(0),
                display_name: r.get(1),
                created_at: r.get(2),
                revision: rev(r.get(3)),
            })
            .collect();
        Ok(paged(items, page))
    }

    async fn get_user(&self, tenant_id: &str, user_id: &str) -> Result<UserInfo> {
        let sql = &format!(
            "SELECT t.tenant_id, u.user_id IS NOT NULL AS found, {USER_COLUMNS}, {GROUP_PERMISSIONS_COLUMN}
             FROM tenants t LEFT JOIN users u ON u.tenant_id = t.tenant_id AND u.user_id = $2
             WHERE t.tenant_id = $1"
        );
        let row = self
            .read_found(sql, tenant_id, user_id, StoreError::UserNotFound)
            .await?;
        Ok(self.user_info(&row))
    }

    async fn list_users(
        &self,
        tenant_id: &str,
        group: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<UserInfo>> {
        self.get_tenant(tenant_id).await?;
        let (a, l) = (after(page), limit(page));
        let rows = match group {
            None => {
                let sql = &format!(
                    "SELECT {USER_COLUMNS}, {GROUP_PERMISSIONS_COLUMN} FROM users u WHERE u.tenant_id = $1 AND u.user_id > $2
                     ORDER BY u.user_id LIMIT $3"
                );
                self.read_all(sql, &[&tenant_id, &a, &l]).await?
            }
            Some(g) => {
                let sql = &format!(
                    "SELECT {USER_COLUMNS}, {GROUP_PERMISSIONS_COLUMN} FROM memberships gm
                     JOIN users u ON u.tenant_id = gm.tenant_id AND u.user_id = gm.user_id
                     WHERE gm.tenant_id = $1 AND gm.group_key = $2 AND gm.user_id > $3
                     ORDER BY gm.user_id LIMIT $4"
                );
                self.read_all(sql, &[&tenant_id, &g, &a, &l]).await?
            }
        };
        Ok(paged(
            rows.iter().map(|r| self.user_info(r)).collect(),
            page,
        ))
    }

    async fn get_group(&self, tenant_id: &str, key: &str) -> Result<GroupInfo> {
        let sql = &format!(
            "SELECT t.tenant_id, g.group_key IS NOT NULL AS found, {GROUP_COLUMNS}
             FROM tenants t LEFT JOIN groups g ON g.tenant_id = t.tenant_id AND g.group_key = $2
             WHERE t.tenant_id = $1"
        );
        let row = self
            .read_found(sql, tenant_id, key, StoreError::GroupNotFound)
            .await?;
        Ok(self.group_info(&row))
    }

    async fn list_groups(&self, tenant_id: &str, page: &PageRequest) -> Result<Page<GroupInfo>> {
        self.get_tenant(tenant_id).await?;
        let (a, l) = (after(page), limit(page));
        let sql = &format!(
            "SELECT {GROUP_COLUMNS} FROM groups g WHERE g.tenant_id = $1 AND g.group_key > $2
             ORDER BY g.group_key LIMIT $3"
        );
        let rows = self.read_all(sql, &[&tenant_id, &a, &l]).await?;
        Ok(paged(
            rows.iter().map(|r| self.group_info(r)).collect(),
            page,
        ))
    }

    async fn member_count(&self, tenant_id: &str, group: &str) -> Result<u64> {
        let row = self
            .read_opt(
                "SELECT (SELECT count(*) FROM memberships m WHERE m.tenant_id = $1 AND m.group_key = $2)
                 FROM tenants WHERE tenant_id = $1",
                &[&tenant_id, &group],
            )
            .await?
            .ok_or_else(|| StoreError::TenantNotFound(tenant_id.to_owned()))?;
        Ok(rev(row.get(0)))
    }

    async fn changes_since(
        &self,
        tenant_id: &str,
        after: Revision,
        limit: usize,
    ) -> Result<Vec<Change>> {
        self.get_tenant(tenant_id).await?;
        let (a, l) = (to_i64(after), to_i64(limit as u64));
        let rows = self
            .read_all(
                "SELECT revision, committed_at, operation, users, groups, all_users, actor, target, before, after
                 FROM changes WHERE tenant_id = $1 AND revision > $2 ORDER BY revision LIMIT $3",
                &[&tenant_id, &a, &l],
            )
            .await?;
        Ok(rows.iter().map(|r| change(tenant_id, r)).collect())
    }

    async fn audit(&self, tenant_id: &str, query: &AuditQuery) -> Result<Vec<Change>> {
        self.get_tenant(tenant_id).await?;
        let before = query.before_revision.map(to_i64);
        let limit = to_i64(query.limit as u64);
        let rows = self
            .read_all(
                "SELECT revision, committed_at, operation, users, groups, all_users, actor, target, before, after
                 FROM changes
                 WHERE tenant_id = $1
                   AND ($2::bigint IS NULL OR revision < $2)
                   AND ($3::text IS NULL OR actor = $3)
                   AND ($4::text IS NULL OR target = $4)
                   AND ($5::timestamptz IS NULL OR committed_at >= $5)
                   AND ($6::timestamptz IS NULL OR committed_at < $6)
                 ORDER BY revision DESC LIMIT $7",
                &[&tenant_id, &before, &query.actor, &query.target, &query.since, &query.until, &limit],
            )
            .await?;
        Ok(rows.iter().map(|r| change(tenant_id, r)).collect())
    }

    async fn latest_revisions(&self, tenant_ids: &[String]) -> Result<Vec<(String, Revision)>> {
        let rows = self
            .read_all(
                "SELECT tenant_id, revision FROM tenants WHERE tenant_id = ANY($1)",
                &[&tenant_ids],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), rev(r.get(1)))).collect())
    }
}

impl PostgresStore {
    /// The row `sql` reads for one of a tenant's users or groups (tenant $1, its key $2) with a
    /// `found` column: no row means no such tenant, `found` false no such user or group.
    async fn read_found(
        &self,
        sql: &str,
        tenant_id: &str,
        key: &str,
        missing: fn(String) -> StoreError,
    ) -> Result<Row> {
        let row = self
            .read_opt(sql, &[&tenant_id, &key])
            .await?
            .ok_or_else(|| StoreError::TenantNotFound(tenant_id.to_owned()))?;
        if !row.get::<_, bool>("found") {
            return Err(missing(key.to_owned()));
        }
        Ok(row)
    }
}
