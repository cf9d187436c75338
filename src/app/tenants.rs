//! Tenants (operators only: tenants are not staff data).

use super::*;

impl Authz {
    pub async fn create_tenant(&self, tenant_id: &str, display_name: &str) -> Result<TenantInfo> {
        validate::id("tenant_id", tenant_id)?;
        validate::text("display_name", display_name)?;
        Ok(self.store.create_tenant(tenant_id, display_name).await?)
    }

    /// A tenant, read by an operator or by one of its active users.
    pub async fn get_tenant(&self, tenant_id: &str, actor: &str) -> Result<TenantInfo> {
        validate::id("tenant_id", tenant_id)?;
        if !actor.is_empty() {
            validate::id("actor_user_id", actor)?;
            let (subject, _) = self
                .store
                .subject(tenant_id, actor, Consistency::Full)
                .await?;
            if subject.user.is_none() {
                return Err(Error::Refused(Refusal::UnknownActor(actor.to_owned())));
            }
            if !subject.is_active() {
                return Err(Error::Refused(Refusal::BlockedActor(actor.to_owned())));
            }
        }
        Ok(self.store.get_tenant(tenant_id).await?)
    }

    pub async fn list_tenants(
        &self,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<TenantInfo>, String)> {
        let req = page_request(page_size, page_token)?;
        let page = self.store.list_tenants(&req).await?;
        let next =
            validate::next_page_token(page.items.last().map(|t| t.tenant_id.as_str()), page.more);
        Ok((page.items, next))
    }
}
