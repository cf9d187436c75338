//! Each tenant RPC of AdminService as a [`TenantRpc`]: its own fields parsed into types, the
//! application called, the response built. Everything else is `AdminApi::serve`'s.

use super::{AdminApi, Admitted, TenantCall, WithPreview, convert, fit_audit_page};
use crate::grpc::pb;
use crate::ids::{GroupKey, Paging, UserId, UserIds};
use std::future::Future;

/// A tenant RPC of AdminService: its method's name, and what it does between its admission
/// (`AdminApi::admit`: the tenant and the caller as types) and its response — parse its own
/// fields, call the application, build the response. `AdminApi::serve` does the rest, the same
/// for every RPC: the key's role, one error mapping, a response within the message limit.
pub(super) trait TenantRpc: TenantCall + Sized {
    const METHOD: &'static str;
    type Response: WithPreview + crate::grpc::answer::Answer;
    fn call(
        self,
        api: &AdminApi,
        a: &Admitted,
    ) -> impl Future<Output = crate::error::Result<Self::Response>> + Send;
}

impl TenantRpc for pb::GetTenantRequest {
    const METHOD: &'static str = "GetTenant";
    type Response = pb::GetTenantResponse;
    async fn call(self, api: &AdminApi, a: &Admitted) -> crate::error::Result<Self::Response> {
        let t = api.app.get_tenant(&a.tenant, &a.by).await?;
        Ok(pb::GetTenantResponse {
            tenant: Some(convert::tenant(t)),
        })
    }
}

impl TenantRpc for pb::UpsertUserRequest {
    const METHOD: &'static str = "UpsertUser";
    type Response = pb::UpsertUserResponse;
    async fn call(self, api: &AdminApi, a: &Admitted) -> crate::error::Result<Self::Response> {
        let user = UserId::parse("user_id", self.user_id)?;
        let call = a.call(self.dry_run);
        let done = (api.app)
            .upsert_user(&a.tenant, &call, &user, &self.display_name, &self.email)
            .await?;
        let (revision, preview) = api.written(&done, a);
        Ok(pb::UpsertUserResponse {
            user: Some(api.user(a, done.value, Vec::new())),
            revision,
            preview,
        })
    }
}

impl TenantRpc for pb::ImportUsersRequest {
    const METHOD: &'static str = "ImportUsers";
    type Response = pb::ImportUsersResponse;
    async fn call(self, api: &AdminApi, a: &Admitted) -> crate::error::Result<Self::Response> {
        let rows: Vec<crate::app::ImportInput> = self
            .rows
            .into_iter()
            .map(|row| crate::app::ImportInput {
                user_id: row.user_id,
                display_name: row.display_name,
                email: row.email,
                group_keys: row.group_keys,
                permissions: row.permissions,
            })
            .collect();
        let done = (api.app)
            .import_users(&a.tenant, &a.call(self.dry_run), &rows)
            .await?;
        let (revision, preview) = api.written(&done, a);
        Ok(pb::ImportUsersResponse {
            imported: i32::try_from(done.value).unwrap_or(i32::MAX),
            revision,
            preview,
        })
    }
}

impl TenantRpc for pb::GetUserRequest {
    const METHOD: &'static str = "GetUser";
    type Response = pb::GetUserResponse;
    async fn call(self, api: &AdminApi, a: &Admitted) -> crate::error::Result<Self::Response> {
        let consistency = convert::consistency(self.consistency)?;
        let user = UserId::parse("user_id", self.user_id)?;
        let u = api
            .app
            .get_user(&a.tenant, &a.by, &user, consistency)
            .await?;
        let roles = api.app.roles_of_set(&u.effective);
        Ok(pb::GetUserResponse {
            user: Some(api.user(a, u, roles)),
        })
    }
}

impl TenantRpc for pb::ListUsersRequest {
    const METHOD: &'static str = "ListUsers";
    type Response = pb::ListUsersResponse;
    async fn call(self, api: &AdminApi, a: &Admitted) -> crate::error::Result<Self::Response> {
        let consistency = convert::consistency(self.consistency)?;
        let group = match self.group_key.as_str() {
            "" => None,
            key => Some(GroupKey::parse("group_key", key)?),
        };
        let page = Paging::parse(self.page_size, &self.page_token)?;
        let (users, next) = (api.app)
            .list_users(&a.tenant, &a.by, group.as_ref(), &page, consistency)
            .await?;
        Ok(pb::ListUsersResponse {
            users: users
                .into_iter()
                .map(|u| {
                    let roles = api.app.roles_of_set(&u.effective);
                    api.user(a, u, roles)
                })
                .collect(),
            next_page_token: next,
        })
    }
}

impl TenantRpc for pb::SetUserStatusRequest {
    const METHOD: &'static str = "SetUserStatus";
    type Response = pb::SetUserStatusResponse;
    async fn call(self, api: &AdminApi, a: &Admitted) -> crate::error::Result<Self::Response> {
        let status = convert::status_in(self.status)?;
        let user = UserId::parse("user_id", self.user_id)?;
        let done = (api.app)
            .set_user_status(&a.tenant, &a.call(self.dry_run), &user, status)
            .await?;
        let (revision, preview) = api.written(&done, a);
        Ok(pb::SetUserStatusResponse {
            user: Some(api.user(a, done.value, Vec::new())),
            revision,
            preview,
        })
    }
}

impl TenantRpc for pb::CreateGroupRequest {
    const METHOD: &'static str = "CreateGroup";
    type Response = pb::CreateGroupResponse;
    async fn call(self, api: &AdminApi, a: &Admitted) -> crate::error::Result<Self::Response> {
        let input = convert::group_in(self.group);
        let done = (api.app)
            .create_group(&a.tenant, &a.call(self.dry_run), &input)
            .await?;
        let (group, revision, preview) = api.group_written(done, a);
        Ok(pb::CreateGroupResponse {
            group,
            revision,
            preview,
        })
    }
}

impl TenantRpc for pb::GetGroupRequest {
    const METHOD: &'static str = "GetGroup";
    type Response = pb::GetGroupResponse;
    async fn call(self, api: &AdminApi, a: &Admitted) -> crate::error::Result<Self::Response> {
        let key = GroupKey::parse("group_key", self.group_key)?;
        let g = api.app.get_group(&a.tenant, &a.by, &key).await?;
        Ok(pb::GetGroupResponse {
            group: Some(convert::group(api.app.catalog(), g)),
        })
    }
}

impl TenantRpc for pb::ListGroupsRequest {
    const METHOD: &'static str = "ListGroups";
    type Response = pb::ListGroupsResponse;
    async fn call(self, api: &AdminApi, a: &Admitted) -> crate::error::Result<Self::Response> {
        let page = Paging::parse(self.page_size, &self.page_token)?;
        let (groups, next) = api.app.list_groups(&a.tenant, &a.by, &page).await?;
        let catalog = api.app.catalog();
        Ok(pb::ListGroupsResponse {
            groups: groups
                .into_iter()
                .map(|g| convert::group(catalog, g))
                .collect(),
            next_page_token: next,
        })
    }
}

impl TenantRpc for pb::UpdateGroupRequest {
    const METHOD: &'static str = "UpdateGroup";
    type Response = pb::UpdateGroupResponse;
    async fn call(self, api: &AdminApi, a: &Admitted) -> crate::error::Result<Self::Response> {
        let key = GroupKey::parse("group_key", self.group_key)?;
        let mask = self.update_mask.map(|m| m.paths).unwrap_or_default();
        let input = convert::group_in(self.group);
        let expected = convert::expected_version(self.expected_version)?;
        let call = a.call(self.dry_run);
        let done = (api.app)
            .update_group(&a.tenant, &call, &key, &input, &mask, expected)
            .await?;
        let (group, revision, preview) = api.group_written(done, a);
        Ok(pb::UpdateGroupResponse {
            group,
            revision,
            preview,
        })
    }
}

impl TenantRpc for pb::DeleteGroupRequest {
    const METHOD: &'static str = "DeleteGroup";
    type Response = pb::DeleteGroupResponse;
    async fn call(self, api: &AdminApi, a: &Admitted) -> crate::error::Result<Self::Response> {
        let key = GroupKey::parse("group_key", self.group_key)?;
        let expected = convert::expected_version(self.expected_version)?;
        let done = (api.app)
            .delete_group(&a.tenant, &a.call(self.dry_run), &key, expected)
            .await?;
        let (revision, preview) = api.written(&done, a);
        Ok(pb::DeleteGroupResponse { revision, preview })
    }
}

impl TenantRpc for pb::DuplicateGroupRequest {
    const METHOD: &'static str = "DuplicateGroup";
    type Response = pb::DuplicateGroupResponse;
    async fn call(self, api: &AdminApi, a: &Admitted) -> crate::error::Result<Self::Response> {
        let input = crate::app::DuplicateInput {
            source_group_key: GroupKey::parse("source_group_key", self.source_group_key)?,
            new_key: self.new_key,
            new_name: self.new_name,
            copy_permissions: self.copy_permissions,
            copy_scoped_grants: self.copy_scoped_grants,
            copy_members: self.copy_members,
        };
        let done = (api.app)
            .duplicate_group(&a.tenant, &a.call(self.dry_run), &input)
            .await?;
        let (group, revision, preview) = api.group_written(done, a);
        Ok(pb::DuplicateGroupResponse {
            group,
            revision,
            preview,
        })
    }
}

impl TenantRpc for pb::AddGroupMembersRequest {
    const METHOD: &'static str = "AddGroupMembers";
    type Response = pb::AddGroupMembersResponse;
    async fn call(self, api: &AdminApi, a: &Admitted) -> crate::error::Result<Self::Response> {
        let key = GroupKey::parse("group_key", self.group_key)?;
        let users = UserIds::parse("user_ids", self.user_ids)?;
        let call = a.call(self.dry_run);
        let done = api.app.add_members(&a.tenant, &call, &key, &users).await?;
        let (revision, preview) = api.written(&done, a);
        Ok(pb::AddGroupMembersResponse { revision, preview })
    }
}

impl TenantRpc for pb::RemoveGroupMembersRequest {
    const METHOD: &'static str = "RemoveGroupMembers";
    type Response = pb::RemoveGroupMembersResponse;
    async fn call(self, api: &AdminApi, a: &Admitted) -> crate::error::Result<Self::Response> {
        let key = GroupKey::parse("group_key", self.group_key)?;
        let users = UserIds::parse("user_ids", self.user_ids)?;
        let call = a.call(self.dry_run);
        let done = api
            .app
            .remove_members(&a.tenant, &call, &key, &users)
            .await?;
        let (revision, preview) = api.written(&done, a);
        Ok(pb::RemoveGroupMembersResponse { revision, preview })
    }
}

impl TenantRpc for pb::GrantPermissionsRequest {
    const METHOD: &'static str = "GrantPermissions";
    type Response = pb::GrantPermissionsResponse;
    async fn call(self, api: &AdminApi, a: &Admitted) -> crate::error::Result<Self::Response> {
        let user = UserId::parse("user_id", self.user_id)?;
        let resource = convert::resource_in(self.resource);
        let call = a.call(self.dry_run);
        let done = (api.app)
            .grant(
                &a.tenant,
                &call,
                &user,
                &self.permissions,
                resource.as_ref(),
            )
            .await?;
        let (revision, preview) = api.written(&done, a);
        Ok(pb::GrantPermissionsResponse { revision, preview })
    }
}

impl TenantRpc for pb::RevokePermissionsRequest {
    const METHOD: &'static str = "RevokePermissions";
    type Response = pb::RevokePermissionsResponse;
    async fn call(self, api: &AdminApi, a: &Admitted) -> crate::error::Result<Self::Response> {
        let user = UserId::parse("user_id", self.user_id)?;
        let resource = convert::resource_in(self.resource);
        let call = a.call(self.dry_run);
        let done = (api.app)
            .revoke(
                &a.tenant,
                &call,
                &user,
                &self.permissions,
                resource.as_ref(),
            )
            .await?;
        let (revision, preview) = api.written(&done, a);
        Ok(pb::RevokePermissionsResponse { revision, preview })
    }
}

impl TenantRpc for pb::SetRestrictionsRequest {
    const METHOD: &'static str = "SetRestrictions";
    type Response = pb::SetRestrictionsResponse;
    async fn call(self, api: &AdminApi, a: &Admitted) -> crate::error::Result<Self::Response> {
        let user = UserId::parse("user_id", self.user_id)?;
        let call = a.call(self.dry_run);
        let (kind, ids) = (&self.resource_type, &self.resource_ids);
        let done = (api.app)
            .set_restrictions(&a.tenant, &call, &user, kind, ids, self.clear)
            .await?;
        let (revision, preview) = api.written(&done, a);
        Ok(pb::SetRestrictionsResponse { revision, preview })
    }
}

impl TenantRpc for pb::ListAuditEventsRequest {
    const METHOD: &'static str = "ListAuditEvents";
    type Response = pb::ListAuditEventsResponse;
    async fn call(self, api: &AdminApi, a: &Admitted) -> crate::error::Result<Self::Response> {
        let actor = match self.filter_actor_user_id.as_str() {
            "" => None,
            id => Some(UserId::parse("filter_actor_user_id", id)?),
        };
        let filter = crate::app::AuditFilter {
            actor,
            target: Some(self.filter_target).filter(|t| !t.is_empty()),
            since: convert::time_in("since", self.since)?,
            until: convert::time_in("until", self.until)?,
            page: Paging::parse(self.page_size, &self.page_token)?,
        };
        let (events, next) = api.app.list_audit(&a.tenant, &a.by, filter).await?;
        // What the response may hold, less room for its own framing and the page token.
        let budget = api.max_message_bytes.saturating_sub(1024);
        Ok(fit_audit_page(events, next, budget))
    }
}
