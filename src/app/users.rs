//! Users.

use super::*;

impl Authz {
    pub async fn upsert_user(
        &self,
        tenant_id: &str,
        call: &AdminCall<'_>,
        user_id: &str,
        display_name: &str,
        email: &str,
    ) -> Result<Committed<UserInfo>> {
        validate::id("user_id", user_id)?;
        validate::text("display_name", display_name)?;
        validate::text("email", email)?;
        let caller = Self::writer(tenant_id, call.actor)?;
        // Who an existing user is (an email is how accounts are recovered) changes only by an
        // actor that could give the user everything it holds.
        let rule = Rule::new(
            AdminOp::EditUsers,
            Effect::Profile {
                user: user_id.to_owned(),
            },
        );
        let done = self
            .store
            .write(
                tenant_id,
                &caller.ctx(call.mode, rule),
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
        tenant_id: &str,
        actor: &str,
        user_id: &str,
        consistency: Consistency,
    ) -> Result<UserInfo> {
        validate::id("user_id", user_id)?;
        let caller = self.caller(tenant_id, actor, AdminOp::ViewUsers).await?;
        self.fresh_enough(tenant_id, consistency).await?;
        let user = self.store.get_user(tenant_id, user_id).await?;
        Ok(self.user_view(&caller, user))
    }

    pub async fn list_users(
        &self,
        tenant_id: &str,
        actor: &str,
        group_key: &str,
        page_size: i32,
        page_token: &str,
        consistency: Consistency,
    ) -> Result<(Vec<UserInfo>, String)> {
        let caller = self.caller(tenant_id, actor, AdminOp::ViewUsers).await?;
        self.fresh_enough(tenant_id, consistency).await?;
        let group = if group_key.is_empty() {
            None
        } else {
            validate::group_key("group_key", group_key)?;
            if self.hidden_from(&caller, group_key) {
                return Err(Self::no_group(group_key));
            }
            if let GroupRef::Custom(k) = self.group_ref(group_key) {
                self.store.get_group(tenant_id, k).await?;
            }
            Some(group_key)
        };
        let req = page_request(page_size, page_token)?;
        let page = self.store.list_users(tenant_id, group, &req).await?;
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
        tenant_id: &str,
        call: &AdminCall<'_>,
        user_id: &str,
        status: Option<UserStatus>,
    ) -> Result<Committed<UserInfo>> {
        validate::id("user_id", user_id)?;
        let status = status
            .ok_or_else(|| Error::Invalid("status is required: ACTIVE or BLOCKED".to_owned()))?;
        let caller = Self::writer(tenant_id, call.actor)?;
        // Blocking takes everything away and unblocking gives it back: either way an actor
        // must hold everything the user holds.
        let effect = match status {
            UserStatus::Blocked => Effect::TakeFrom {
                users: vec![user_id.to_owned()],
            },
            UserStatus::Active => Effect::Unblock {
                user: user_id.to_owned(),
            },
        };
        let rule = Rule::new(AdminOp::BlockUsers, effect);
        let done = self
            .store
            .write(
                tenant_id,
                &caller.ctx(call.mode, rule),
                Write::SetUserStatus { user_id, status },
            )
            .await?
            .user()?;
        Ok(done.map(|u| self.user_view(&caller, u)))
    }
}
