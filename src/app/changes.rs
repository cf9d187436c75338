//! Change stream.

use super::*;

impl Authz {
    /// Subscribe before reading the change log, so no commit falls between the two.
    pub fn commits(&self) -> crate::store::CommitSignal {
        self.store.commits()
    }

    pub async fn changes_since(
        &self,
        tenant_id: &TenantId,
        after: Revision,
        limit: usize,
    ) -> Result<Vec<crate::store::Change>> {
        Ok(self
            .store
            .records()
            .changes_since(tenant_id, after, limit)
            .await?)
    }

    /// The latest revision of each of these tenants (those that exist).
    pub async fn latest_revisions(&self, tenant_ids: &[String]) -> Result<Vec<(String, Revision)>> {
        Ok(self.store.records().latest_revisions(tenant_ids).await?)
    }

    /// Where a Watch starts: after the given revision token, or after the tenant's latest.
    pub async fn watch_start(
        &self,
        tenant_id: &TenantId,
        after_revision: &str,
    ) -> Result<Revision> {
        let latest = self.store.records().get_tenant(tenant_id).await?.revision;
        if after_revision.is_empty() {
            return Ok(latest);
        }
        match validate::revision_token(after_revision) {
            Some(r) if r <= latest => Ok(r),
            Some(r) => Err(Error::Invalid(format!(
                "after_revision {r} is newer than the tenant's latest revision {latest}"
            ))),
            None => Err(Error::Invalid(format!(
                "after_revision {after_revision:?} is not a revision token; pass a `revision` string from a response, or leave it empty to start now"
            ))),
        }
    }
}
