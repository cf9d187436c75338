//! Tenants (operators only: tenants are not staff data).

use super::*;

impl Authz {
    pub async fn create_tenant(
        &self,
        tenant_id: &TenantId,
        display_name: &str,
    ) -> Result<TenantInfo> {
        validate::text("display_name", display_name)?;
        Ok(self.store.create_tenant(tenant_id, display_name).await?)
    }

    /// A tenant, read by an operator or by one of its active users.
    pub async fn get_tenant(&self, tenant_id: &TenantId, by: &By) -> Result<TenantInfo> {
        if let By::Actor(actor) = by {
            let (subject, _) = self
                .store
                .subject(tenant_id, actor, Consistency::Full)
                .await?;
            if subject.user.is_none() {
                return Err(Error::Refused(Refusal::UnknownActor(actor.to_string())));
            }
            if !subject.is_active() {
                return Err(Error::Refused(Refusal::BlockedActor(actor.to_string())));
            }
        }
        Ok(self.store.records().get_tenant(tenant_id).await?)
    }

    pub async fn list_tenants(&self, page: &Paging) -> Result<(Vec<TenantInfo>, String)> {
        let page = self.store.records().list_tenants(&page.0).await?;
        let next =
            validate::next_page_token(page.items.last().map(|t| t.tenant_id.as_str()), page.more);
        Ok((page.items, next))
    }
}
