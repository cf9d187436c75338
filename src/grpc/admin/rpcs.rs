//! Each tenant RPC of AdminService as a [`TenantRpc`]: its own fields parsed into types, the
//! application called, the response built. Everything else is `AdminApi::serve`'s.

use super::{AdminApi, Admitted, TenantCall, WithPreview, convert, fit_audit_page};
use crate::app::{Direction, DuplicateInput, ImportInput};
use crate::error::Result;
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
    ) -> impl Future<Output = Result<Self::Response>> + Send;
}

/// `Method: Request -> Response |r, api, a| { … }` declares the `TenantRpc` of `pb::Request`:
/// `r` is the request, `api` the `AdminApi`, `a` the call's admission.
macro_rules! tenant_rpcs {
    ($($method:ident: $req:ident -> $resp:ident |$r:ident, $api:ident, $a:ident| $body:block)*) => {
        $(impl TenantRpc for pb::$req {
            const METHOD: &'static str = stringify!($method);
            type Response = pb::$resp;
            async fn call(self, $api: &AdminApi, $a: &Admitted) -> Result<pb::$resp> {
                let $r = self;
                $body
            }
        })*
    };
}

tenant_rpcs! {
    GetTenant: GetTenantRequest -> GetTenantResponse |_r, api, a| {
        let tenant = api.app.get_tenant(&a.tenant, &a.by).await?;
        Ok(pb::GetTenantResponse { tenant: Some(convert::tenant(tenant)) })
    }

    UpsertUser: UpsertUserRequest -> UpsertUserResponse |r, api, a| {
        let user = UserId::parse("user_id", r.user_id)?;
        let (name, email) = (&r.display_name, &r.email);
        let done = api.app.upsert_user(&a.tenant, &a.call(r.dry_run), &user, name, email).await?;
        let (revision, preview) = api.written(&done, a);
        let user = Some(api.user(a, done.value, Vec::new()));
        Ok(pb::UpsertUserResponse { user, revision, preview })
    }

    ImportUsers: ImportUsersRequest -> ImportUsersResponse |r, api, a| {
        let rows: Vec<ImportInput> = r.rows.into_iter().map(convert::import_row).collect();
        let done = api.app.import_users(&a.tenant, &a.call(r.dry_run), &rows).await?;
        let (revision, preview) = api.written(&done, a);
        let imported = i32::try_from(done.value).unwrap_or(i32::MAX);
        Ok(pb::ImportUsersResponse { imported, revision, preview })
    }

    GetUser: GetUserRequest -> GetUserResponse |r, api, a| {
        let consistency = convert::consistency(r.consistency)?;
        let user = UserId::parse("user_id", r.user_id)?;
        let u = api.app.get_user(&a.tenant, &a.by, &user, consistency).await?;
        Ok(pb::GetUserResponse { user: Some(api.user_with_roles(a, u)) })
    }

    ListUsers: ListUsersRequest -> ListUsersResponse |r, api, a| {
        let consistency = convert::consistency(r.consistency)?;
        let group = match r.group_key.as_str() {
            "" => None,
            key => Some(GroupKey::parse("group_key", key)?),
        };
        let page = Paging::parse(r.page_size, &r.page_token)?;
        let (users, next_page_token) =
            api.app.list_users(&a.tenant, &a.by, group.as_ref(), &page, consistency).await?;
        let users = users.into_iter().map(|u| api.user_with_roles(a, u)).collect();
        Ok(pb::ListUsersResponse { users, next_page_token })
    }

    SetUserStatus: SetUserStatusRequest -> SetUserStatusResponse |r, api, a| {
        let status = convert::status_in(r.status)?;
        let user = UserId::parse("user_id", r.user_id)?;
        let call = a.call(r.dry_run);
        let done = api.app.set_user_status(&a.tenant, &call, &user, status).await?;
        let (revision, preview) = api.written(&done, a);
        let user = Some(api.user(a, done.value, Vec::new()));
        Ok(pb::SetUserStatusResponse { user, revision, preview })
    }

    CreateGroup: CreateGroupRequest -> CreateGroupResponse |r, api, a| {
        let input = convert::group_in(r.group);
        let done = api.app.create_group(&a.tenant, &a.call(r.dry_run), &input).await?;
        let (group, revision, preview) = api.group_written(done, a);
        Ok(pb::CreateGroupResponse { group, revision, preview })
    }

    GetGroup: GetGroupRequest -> GetGroupResponse |r, api, a| {
        let key = GroupKey::parse("group_key", r.group_key)?;
        let group = api.app.get_group(&a.tenant, &a.by, &key).await?;
        Ok(pb::GetGroupResponse { group: Some(convert::group(api.app.catalog(), group)) })
    }

    ListGroups: ListGroupsRequest -> ListGroupsResponse |r, api, a| {
        let page = Paging::parse(r.page_size, &r.page_token)?;
        let (groups, next_page_token) = api.app.list_groups(&a.tenant, &a.by, &page).await?;
        let catalog = api.app.catalog();
        let groups = groups.into_iter().map(|g| convert::group(catalog, g)).collect();
        Ok(pb::ListGroupsResponse { groups, next_page_token })
    }

    UpdateGroup: UpdateGroupRequest -> UpdateGroupResponse |r, api, a| {
        let key = GroupKey::parse("group_key", r.group_key)?;
        let mask = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let input = convert::group_in(r.group);
        let expected = convert::expected_version(r.expected_version)?;
        let call = a.call(r.dry_run);
        let done = api.app.update_group(&a.tenant, &call, &key, &input, &mask, expected).await?;
        let (group, revision, preview) = api.group_written(done, a);
        Ok(pb::UpdateGroupResponse { group, revision, preview })
    }

    DeleteGroup: DeleteGroupRequest -> DeleteGroupResponse |r, api, a| {
        let key = GroupKey::parse("group_key", r.group_key)?;
        let expected = convert::expected_version(r.expected_version)?;
        let done = api.app.delete_group(&a.tenant, &a.call(r.dry_run), &key, expected).await?;
        let (revision, preview) = api.written(&done, a);
        Ok(pb::DeleteGroupResponse { revision, preview })
    }

    DuplicateGroup: DuplicateGroupRequest -> DuplicateGroupResponse |r, api, a| {
        let input = DuplicateInput {
            source_group_key: GroupKey::parse("source_group_key", r.source_group_key)?,
            new_key: r.new_key,
            new_name: r.new_name,
            copy_permissions: r.copy_permissions,
            copy_scoped_grants: r.copy_scoped_grants,
            copy_members: r.copy_members,
        };
        let done = api.app.duplicate_group(&a.tenant, &a.call(r.dry_run), &input).await?;
        let (group, revision, preview) = api.group_written(done, a);
        Ok(pb::DuplicateGroupResponse { group, revision, preview })
    }

    AddGroupMembers: AddGroupMembersRequest -> AddGroupMembersResponse |r, api, a| {
        let members = (r.group_key, r.user_ids);
        let (revision, preview) = members_of(api, a, members, r.dry_run, Direction::Add).await?;
        Ok(pb::AddGroupMembersResponse { revision, preview })
    }

    RemoveGroupMembers: RemoveGroupMembersRequest -> RemoveGroupMembersResponse |r, api, a| {
        let members = (r.group_key, r.user_ids);
        let (revision, preview) = members_of(api, a, members, r.dry_run, Direction::Remove).await?;
        Ok(pb::RemoveGroupMembersResponse { revision, preview })
    }

    GrantPermissions: GrantPermissionsRequest -> GrantPermissionsResponse |r, api, a| {
        let grants = (r.user_id, r.permissions, r.resource);
        let (revision, preview) = grants_of(api, a, grants, r.dry_run, Direction::Add).await?;
        Ok(pb::GrantPermissionsResponse { revision, preview })
    }

    RevokePermissions: RevokePermissionsRequest -> RevokePermissionsResponse |r, api, a| {
        let grants = (r.user_id, r.permissions, r.resource);
        let (revision, preview) = grants_of(api, a, grants, r.dry_run, Direction::Remove).await?;
        Ok(pb::RevokePermissionsResponse { revision, preview })
    }

    SetRestrictions: SetRestrictionsRequest -> SetRestrictionsResponse |r, api, a| {
        let user = UserId::parse("user_id", r.user_id)?;
        let (call, kind, ids) = (a.call(r.dry_run), &r.resource_type, &r.resource_ids);
        let done = api.app.set_restrictions(&a.tenant, &call, &user, kind, ids, r.clear).await?;
        let (revision, preview) = api.written(&done, a);
        Ok(pb::SetRestrictionsResponse { revision, preview })
    }

    ListAuditEvents: ListAuditEventsRequest -> ListAuditEventsResponse |r, api, a| {
        let actor = match r.filter_actor_user_id.as_str() {
            "" => None,
            id => Some(UserId::parse("filter_actor_user_id", id)?),
        };
        let filter = crate::app::AuditFilter {
            actor,
            target: Some(r.filter_target).filter(|t| !t.is_empty()),
            since: convert::time_in("since", r.since)?,
            until: convert::time_in("until", r.until)?,
            page: Paging::parse(r.page_size, &r.page_token)?,
        };
        let (events, next) = api.app.list_audit(&a.tenant, &a.by, filter).await?;
        // What the response may hold, less room for its own framing and the page token.
        let budget = api.max_message_bytes.saturating_sub(1024);
        Ok(fit_audit_page(events, next, budget))
    }
}

/// AddGroupMembers and RemoveGroupMembers, from the request's group and users: the revision and
/// the preview.
async fn members_of(
    api: &AdminApi,
    a: &Admitted,
    (group_key, user_ids): (String, Vec<String>),
    dry_run: bool,
    direction: Direction,
) -> Result<(String, Option<pb::Preview>)> {
    let key = GroupKey::parse("group_key", group_key)?;
    let users = UserIds::parse("user_ids", user_ids)?;
    let call = a.call(dry_run);
    let done = (api.app)
        .change_members(&a.tenant, &call, &key, &users, direction)
        .await?;
    Ok(api.written(&done, a))
}

/// GrantPermissions and RevokePermissions, from the request's user, permissions and resource:
/// the revision and the preview.
async fn grants_of(
    api: &AdminApi,
    a: &Admitted,
    (user_id, permissions, resource): (String, Vec<String>, Option<pb::Resource>),
    dry_run: bool,
    direction: Direction,
) -> Result<(String, Option<pb::Preview>)> {
    let user = UserId::parse("user_id", user_id)?;
    let resource = convert::resource_in(resource);
    let call = a.call(dry_run);
    let done = (api.app)
        .change_grants(
            &a.tenant,
            &call,
            &user,
            direction,
            &permissions,
            resource.as_ref(),
        )
        .await?;
    Ok(api.written(&done, a))
}
