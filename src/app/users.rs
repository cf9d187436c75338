//! Users.

use super::*;

impl Authz {
    pub async fn upsert_user(
        &self,
        tenant_id: &TenantId,
        call: &AdminCall,
        user_id: &UserId,
        display_name: &str,
        email: &str,
    ) -> Result<Committed<UserInfo>> {
        validate::text("display_name", display_name)?;
        validate::text("email", email)?;
        let caller = Caller::writer(&call.by);
        // Who an existing user is (an email is how accounts are recovered) changes only by an
        // actor that could give the user everything it holds.
        let rule = Rule::new(
            AdminOp::EditUsers,
            Effect::Profile {
                user: user_id.to_string(),
            },
        );
        let done = self
            .commit(
                tenant_id,
                &caller,
                call.mode,
                rule,
                Write::UpsertUser {
                    user_id,
                    display_name,
                    email,
                },
            )
            .await?
            .user()?;
        Ok(done.map(|u| self.user_view(&caller, u)))
    }

    /// A user, its roles derived from the same snapshot. Admin reads come from the source of
    /// truth, so every consistency is met; a token from the future is refused as for checks.
    pub async fn get_user(
        &self,
        tenant_id: &TenantId,
        by: &By,
        user_id: &UserId,
        consistency: Consistency,
    ) -> Result<UserInfo> {
        let caller = self.caller(tenant_id, by, AdminOp::ViewUsers).await?;
        self.fresh_enough(tenant_id, consistency).await?;
        let user = self.store.records().get_user(tenant_id, user_id).await?;
        Ok(self.user_view(&caller, user))
    }

    pub async fn list_users(
        &self,
        tenant_id: &TenantId,
        by: &By,
        group_key: Option<&GroupKey>,
        page: &Paging,
        consistency: Consistency,
    ) -> Result<(Vec<UserInfo>, String)> {
        let caller = self.caller(tenant_id, by, AdminOp::ViewUsers).await?;
        self.fresh_enough(tenant_id, consistency).await?;
        let group = if let Some(group_key) = group_key {
            if self.hidden_from(&caller, group_key) {
                return Err(Self::no_group(group_key));
            }
            if let GroupRef::Custom(k) = self.group_ref(group_key) {
                self.store.records().get_group(tenant_id, k).await?;
            }
            Some(group_key.as_str())
        } else {
            None
        };
        let page = self
            .store
            .records()
            .list_users(tenant_id, group, &page.0)
            .await?;
        let next =
            validate::next_page_token(page.items.last().map(|u| u.user_id.as_str()), page.more);
        Ok((
            page.items
                .into_iter()
                .map(|u| self.user_view(&caller, u))
                .collect(),
            next,
        ))
    }

    pub async fn set_user_status(
        &self,
        tenant_id: &TenantId,
        call: &AdminCall,
        user_id: &UserId,
        status: Option<UserStatus>,
    ) -> Result<Committed<UserInfo>> {
        let status = status
            .ok_or_else(|| Error::Invalid("status is required: ACTIVE or BLOCKED".to_owned()))?;
        let caller = Caller::writer(&call.by);
        // Blocking takes everything away and unblocking gives it back: either way an actor
        // must hold everything the user holds.
        let effect = match status {
            UserStatus::Blocked => Effect::TakeFrom {
                users: vec![user_id.to_string()],
            },
            UserStatus::Active => Effect::Unblock {
                user: user_id.to_string(),
            },
        };
        let rule = Rule::new(AdminOp::BlockUsers, effect);
        let done = self
            .commit(
                tenant_id,
                &caller,
                call.mode,
                rule,
                Write::SetUserStatus { user_id, status },
            )
            .await?
            .user()?;
        Ok(done.map(|u| self.user_view(&caller, u)))
    }
}
