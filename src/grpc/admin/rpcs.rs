//! Every RPC of AdminService. A tenant RPC is a [`TenantRpc`], declared once in `tenant_rpcs!`:
//! its own fields parsed into types, the application called, the response built; everything
//! else is `AdminApi::serve`'s. The operator-wide and catalog RPCs follow, in the service's
//! impl.

use super::{AdminApi, Admitted, Reply, TenantCall, WithPreview, convert, fit_audit_page};
use crate::app::{Direction, DuplicateInput, ImportInput};
use crate::error::Result;
use crate::gate::{self, Role};
use crate::grpc::answer::respond;
use crate::grpc::pb;
use crate::grpc::pb::admin_service_server::AdminService;
use crate::grpc::status::to_status;
use crate::ids::{By, GroupKey, Paging, TenantId, UserId, UserIds};
use std::future::Future;
use tonic::Request;

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
/// `r` is the request, `api` the `AdminApi`, `a` the call's admission. `-> Response + preview`
/// says the response carries a write's preview (which `AdminApi::fitted` may cut to size).
macro_rules! tenant_rpcs {
    ($($method:ident: $req:ident -> $resp:ident $(+ $preview:ident)?
        |$r:ident, $api:ident, $a:ident| $body:block)*) => {
        $(
            impl TenantCall for pb::$req {
                fn tenant_id(&self) -> &str {
                    &self.tenant_id
                }
                fn actor_user_id(&self) -> &str {
                    &self.actor_user_id
                }
            }

            impl WithPreview for pb::$resp {
                fn preview_mut(&mut self) -> Option<&mut pb::Preview> {
                    tenant_rpcs!(@preview self $($preview)?)
                }
            }

            impl TenantRpc for pb::$req {
                const METHOD: &'static str = stringify!($method);
                type Response = pb::$resp;
                async fn call(self, $api: &AdminApi, $a: &Admitted) -> Result<pb::$resp> {
                    let $r = self;
                    $body
                }
            }
        )*
    };
    (@preview $response:ident preview) => { $response.preview.as_mut() };
    (@preview $response:ident) => { None };
}

tenant_rpcs! {
    GetTenant: GetTenantRequest -> GetTenantResponse |_r, api, a| {
        let tenant = api.app.get_tenant(&a.tenant, &a.by).await?;
        Ok(pb::GetTenantResponse { tenant: Some(convert::tenant(tenant)) })
    }

    UpsertUser: UpsertUserRequest -> UpsertUserResponse + preview |r, api, a| {
        let user = UserId::parse("user_id", r.user_id)?;
        let (name, email) = (&r.display_name, &r.email);
        let done = api.app.upsert_user(&a.tenant, &a.call(r.dry_run), &user, name, email).await?;
        let (revision, preview) = api.written(&done, a);
        let user = Some(api.user(a, done.value, Vec::new()));
        Ok(pb::UpsertUserResponse { user, revision, preview })
    }

    ImportUsers: ImportUsersRequest -> ImportUsersResponse + preview |r, api, a| {
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

    SetUserStatus: SetUserStatusRequest -> SetUserStatusResponse + preview |r, api, a| {
        let status = convert::status_in(r.status)?;
        let user = UserId::parse("user_id", r.user_id)?;
        let call = a.call(r.dry_run);
        let done = api.app.set_user_status(&a.tenant, &call, &user, status).await?;
        let (revision, preview) = api.written(&done, a);
        let user = Some(api.user(a, done.value, Vec::new()));
        Ok(pb::SetUserStatusResponse { user, revision, preview })
    }

    CreateGroup: CreateGroupRequest -> CreateGroupResponse + preview |r, api, a| {
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

    UpdateGroup: UpdateGroupRequest -> UpdateGroupResponse + preview |r, api, a| {
        let key = GroupKey::parse("group_key", r.group_key)?;
        let mask = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let input = convert::group_in(r.group);
        let expected = convert::expected_version(r.expected_version)?;
        let call = a.call(r.dry_run);
        let done = api.app.update_group(&a.tenant, &call, &key, &input, &mask, expected).await?;
        let (group, revision, preview) = api.group_written(done, a);
        Ok(pb::UpdateGroupResponse { group, revision, preview })
    }

    DeleteGroup: DeleteGroupRequest -> DeleteGroupResponse + preview |r, api, a| {
        let key = GroupKey::parse("group_key", r.group_key)?;
        let expected = convert::expected_version(r.expected_version)?;
        let done = api.app.delete_group(&a.tenant, &a.call(r.dry_run), &key, expected).await?;
        let (revision, preview) = api.written(&done, a);
        Ok(pb::DeleteGroupResponse { revision, preview })
    }

    DuplicateGroup: DuplicateGroupRequest -> DuplicateGroupResponse + preview |r, api, a| {
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

    AddGroupMembers: AddGroupMembersRequest -> AddGroupMembersResponse + preview |r, api, a| {
        let members = (r.group_key, r.user_ids);
        let (revision, preview) = members_of(api, a, members, r.dry_run, Direction::Add).await?;
        Ok(pb::AddGroupMembersResponse { revision, preview })
    }

    RemoveGroupMembers: RemoveGroupMembersRequest -> RemoveGroupMembersResponse + preview |r, api, a| {
        let members = (r.group_key, r.user_ids);
        let (revision, preview) = members_of(api, a, members, r.dry_run, Direction::Remove).await?;
        Ok(pb::RemoveGroupMembersResponse { revision, preview })
    }

    GrantPermissions: GrantPermissionsRequest -> GrantPermissionsResponse + preview |r, api, a| {
        let grants = (r.user_id, r.permissions, r.resource);
        let (revision, preview) = grants_of(api, a, grants, r.dry_run, Direction::Add).await?;
        Ok(pb::GrantPermissionsResponse { revision, preview })
    }

    RevokePermissions: RevokePermissionsRequest -> RevokePermissionsResponse + preview |r, api, a| {
        let grants = (r.user_id, r.permissions, r.resource);
        let (revision, preview) = grants_of(api, a, grants, r.dry_run, Direction::Remove).await?;
        Ok(pb::RevokePermissionsResponse { revision, preview })
    }

    SetRestrictions: SetRestrictionsRequest -> SetRestrictionsResponse + preview |r, api, a| {
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

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn create_tenant(
        &self,
        request: Request<pb::CreateTenantRequest>,
    ) -> Reply<pb::CreateTenantResponse> {
        const METHOD: &str = "CreateTenant";
        let r = self.operator_call(METHOD, request, "create tenants")?;
        crate::telemetry::tenant(&r.tenant_id);
        let t = self
            .operator(METHOD, async || {
                let tenant = TenantId::parse("tenant_id", r.tenant_id)?;
                self.app.create_tenant(&tenant, &r.display_name).await
            })
            .await?;
        respond(pb::CreateTenantResponse {
            revision: convert::revision(t.revision),
            tenant: Some(convert::tenant(t)),
        })
    }

    async fn get_tenant(
        &self,
        request: Request<pb::GetTenantRequest>,
    ) -> Reply<pb::GetTenantResponse> {
        self.serve(request).await
    }

    async fn list_tenants(
        &self,
        request: Request<pb::ListTenantsRequest>,
    ) -> Reply<pb::ListTenantsResponse> {
        const METHOD: &str = "ListTenants";
        // Tenants are every customer's: listing them is an operator-wide read.
        let r = self.operator_call(METHOD, request, "list tenants")?;
        let (tenants, next) = self
            .operator(METHOD, async || {
                let page = Paging::parse(r.page_size, &r.page_token)?;
                self.app.list_tenants(&page).await
            })
            .await?;
        respond(pb::ListTenantsResponse {
            tenants: tenants.into_iter().map(convert::tenant).collect(),
            next_page_token: next,
        })
    }

    async fn upsert_user(
        &self,
        request: Request<pb::UpsertUserRequest>,
    ) -> Reply<pb::UpsertUserResponse> {
        self.serve(request).await
    }

    async fn import_users(
        &self,
        request: Request<pb::ImportUsersRequest>,
    ) -> Reply<pb::ImportUsersResponse> {
        self.serve(request).await
    }

    async fn get_user(&self, request: Request<pb::GetUserRequest>) -> Reply<pb::GetUserResponse> {
        self.serve(request).await
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Reply<pb::ListUsersResponse> {
        self.serve(request).await
    }

    async fn set_user_status(
        &self,
        request: Request<pb::SetUserStatusRequest>,
    ) -> Reply<pb::SetUserStatusResponse> {
        self.serve(request).await
    }

    async fn create_group(
        &self,
        request: Request<pb::CreateGroupRequest>,
    ) -> Reply<pb::CreateGroupResponse> {
        self.serve(request).await
    }

    async fn get_group(
        &self,
        request: Request<pb::GetGroupRequest>,
    ) -> Reply<pb::GetGroupResponse> {
        self.serve(request).await
    }

    async fn list_groups(
        &self,
        request: Request<pb::ListGroupsRequest>,
    ) -> Reply<pb::ListGroupsResponse> {
        self.serve(request).await
    }

    async fn update_group(
        &self,
        request: Request<pb::UpdateGroupRequest>,
    ) -> Reply<pb::UpdateGroupResponse> {
        self.serve(request).await
    }

    async fn delete_group(
        &self,
        request: Request<pb::DeleteGroupRequest>,
    ) -> Reply<pb::DeleteGroupResponse> {
        self.serve(request).await
    }

    async fn duplicate_group(
        &self,
        request: Request<pb::DuplicateGroupRequest>,
    ) -> Reply<pb::DuplicateGroupResponse> {
        self.serve(request).await
    }

    async fn add_group_members(
        &self,
        request: Request<pb::AddGroupMembersRequest>,
    ) -> Reply<pb::AddGroupMembersResponse> {
        self.serve(request).await
    }

    async fn remove_group_members(
        &self,
        request: Request<pb::RemoveGroupMembersRequest>,
    ) -> Reply<pb::RemoveGroupMembersResponse> {
        self.serve(request).await
    }

    async fn grant_permissions(
        &self,
        request: Request<pb::GrantPermissionsRequest>,
    ) -> Reply<pb::GrantPermissionsResponse> {
        self.serve(request).await
    }

    async fn revoke_permissions(
        &self,
        request: Request<pb::RevokePermissionsRequest>,
    ) -> Reply<pb::RevokePermissionsResponse> {
        self.serve(request).await
    }

    async fn set_restrictions(
        &self,
        request: Request<pb::SetRestrictionsRequest>,
    ) -> Reply<pb::SetRestrictionsResponse> {
        self.serve(request).await
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Reply<pb::ListAuditEventsResponse> {
        self.serve(request).await
    }

    async fn get_catalog(
        &self,
        _request: Request<pb::GetCatalogRequest>,
    ) -> Reply<pb::GetCatalogResponse> {
        // Internal (staff-only) groups and permissions exist only for operator keys.
        let operator = gate::role() == Role::Operator;
        let c = self.app.catalog();
        respond(pb::GetCatalogResponse {
            name: c.name.clone(),
            version: c.version.clone(),
            fingerprint: c.fingerprint.clone(),
            description: c.description.clone(),
            permission_count: i32::try_from(
                c.permissions()
                    .iter()
                    .filter(|p| operator || !p.internal)
                    .count(),
            )
            .unwrap_or(i32::MAX),
            action_count: i32::try_from(c.actions().len()).unwrap_or(i32::MAX),
            system_group_keys: c
                .groups()
                .iter()
                .filter(|g| operator || !g.internal)
                .map(|g| g.key.clone())
                .collect(),
            resource_types: c.resource_types().iter().map(|t| t.key.clone()).collect(),
            context_flags: c.context_flags().iter().map(|f| f.key.clone()).collect(),
        })
    }

    async fn list_permissions(
        &self,
        request: Request<pb::ListPermissionsRequest>,
    ) -> Reply<pb::ListPermissionsResponse> {
        const METHOD: &str = "ListPermissions";
        let operator = gate::role() == Role::Operator;
        let r = request.into_inner();
        let by = By::parse("actor_user_id", r.actor_user_id.as_str())
            .and_then(|by| {
                crate::validate::text("section", &r.section)?;
                Ok(by)
            })
            .map_err(|e| self.fail(METHOD, &By::Operator, e))?;
        let permissions = self
            .app
            .catalog()
            .permissions()
            .iter()
            .filter(|p| r.section.is_empty() || p.section == r.section)
            .filter(|p| !p.internal || (operator && !by.is_actor()))
            .map(|p| pb::Permission {
                key: p.key.clone(),
                name: p.name.clone(),
                section: p.section.clone(),
                description: p.description.clone(),
                internal: p.internal,
                aliases: p.aliases.clone(),
            })
            .collect();
        respond(pb::ListPermissionsResponse { permissions })
    }

    async fn list_actions(
        &self,
        request: Request<pb::ListActionsRequest>,
    ) -> Reply<pb::ListActionsResponse> {
        let r = request.into_inner();
        crate::validate::text("prefix", &r.prefix).map_err(to_status)?;
        let actions = self
            .app
            .catalog()
            .actions()
            .iter()
            .filter(|a| a.key.starts_with(&r.prefix))
            .map(|a| pb::Action {
                key: a.key.clone(),
                description: a.description.clone(),
                expression: a.expr.source().to_owned(),
            })
            .collect();
        respond(pb::ListActionsResponse { actions })
    }
}
