//! AdminService through the client: the same routing, key, deadlines and retries (reads only),
//! and every committed write's revision remembered for read-your-writes.

use crate::Error;
use crate::client::{Client, Kind};
use crate::proto::{self, admin_service_client::AdminServiceClient};
use std::time::Duration;

/// The AdminService: [`Client::admin`]. Each method takes the generated request message and
/// returns the generated response, documented in `proto/authz/v1/admin.proto`.
///
/// With [`as_actor`](Self::as_actor), every request that names an actor and leaves
/// `actor_user_id` empty is made on behalf of that staff user (the server then applies the
/// admin rules with that user's permissions). Without one, requests are an operator's (which
/// needs an `operator` key when the server has keys).
///
/// ```no_run
/// # async fn f(client: authz_client::Client) -> Result<(), authz_client::Error> {
/// use authz_client::proto;
/// let added = client
///     .admin()
///     .as_actor("olivia")
///     .add_group_members(proto::AddGroupMembersRequest {
///         tenant_id: "acme".into(),
///         group_key: "analysts".into(),
///         user_ids: vec!["alice".into()],
///         ..Default::default()
///     })
///     .await?;
/// // Checks of `acme` through this client now see Alice in the group, on any replica.
/// assert!(client.check("acme", "alice").permission("view_reports").await?.allowed);
/// # let _ = added; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Admin<'c> {
    client: &'c Client,
    actor: Option<String>,
    timeout: Option<Duration>,
}

impl Client {
    /// The AdminService: tenants, users, groups, grants, restrictions, the audit log, the
    /// catalog.
    pub fn admin(&self) -> Admin<'_> {
        Admin {
            client: self,
            actor: None,
            timeout: None,
        }
    }
}

/// What the client needs to know of an admin request.
trait AdminRequest: Clone {
    /// The tenant it concerns (empty for tenant-less reads: routed by the empty string).
    fn tenant(&self) -> &str;
    /// Sets the actor, where the request names one and left it empty.
    fn default_actor(&mut self, _actor: &str) {}
    /// Whether it only previews.
    fn dry_run(&self) -> bool {
        false
    }
}

macro_rules! tenant_of {
    ($($req:ident),*) => {$(
        impl AdminRequest for proto::$req {
            fn tenant(&self) -> &str { &self.tenant_id }
        }
    )*};
}

macro_rules! tenant_actor_of {
    ($($req:ident),*) => {$(
        impl AdminRequest for proto::$req {
            fn tenant(&self) -> &str { &self.tenant_id }
            fn default_actor(&mut self, actor: &str) {
                if self.actor_user_id.is_empty() { self.actor_user_id = actor.to_owned(); }
            }
        }
    )*};
}

macro_rules! tenant_actor_dry_of {
    ($($req:ident),*) => {$(
        impl AdminRequest for proto::$req {
            fn tenant(&self) -> &str { &self.tenant_id }
            fn default_actor(&mut self, actor: &str) {
                if self.actor_user_id.is_empty() { self.actor_user_id = actor.to_owned(); }
            }
            fn dry_run(&self) -> bool { self.dry_run }
        }
    )*};
}

macro_rules! no_tenant_of {
    ($($req:ident),*) => {$(
        impl AdminRequest for proto::$req {
            fn tenant(&self) -> &str { "" }
        }
    )*};
}

tenant_of!(CreateTenantRequest);
no_tenant_of!(ListTenantsRequest, GetCatalogRequest, ListActionsRequest);
tenant_actor_of!(
    GetTenantRequest,
    GetUserRequest,
    ListUsersRequest,
    GetGroupRequest,
    ListGroupsRequest,
    ListAuditEventsRequest
);
tenant_actor_dry_of!(
    UpsertUserRequest,
    SetUserStatusRequest,
    ImportUsersRequest,
    CreateGroupRequest,
    UpdateGroupRequest,
    DeleteGroupRequest,
    DuplicateGroupRequest,
    AddGroupMembersRequest,
    RemoveGroupMembersRequest,
    GrantPermissionsRequest,
    RevokePermissionsRequest,
    SetRestrictionsRequest
);

impl AdminRequest for proto::ListPermissionsRequest {
    fn tenant(&self) -> &str {
        ""
    }
    fn default_actor(&mut self, actor: &str) {
        if self.actor_user_id.is_empty() {
            self.actor_user_id = actor.to_owned();
        }
    }
}

impl<'c> Admin<'c> {
    /// Makes every request on behalf of this staff user (where the request leaves
    /// `actor_user_id` empty).
    pub fn as_actor(mut self, actor: impl Into<String>) -> Self {
        let actor = actor.into();
        self.actor = (!actor.is_empty()).then_some(actor);
        self
    }

    /// The deadline of each call, retries included, instead of the client's.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    fn prepare<R: AdminRequest>(&self, request: &mut R) {
        if let Some(a) = &self.actor {
            request.default_actor(a);
        }
    }
}

macro_rules! reads {
    ($($(#[$doc:meta])* $method:ident($req:ident) -> $resp:ident = $path:literal;)*) => {
        impl Admin<'_> {$(
            $(#[$doc])*
            pub async fn $method(&self, mut request: proto::$req) -> Result<proto::$resp, Error> {
                self.prepare(&mut request);
                let tenant = request.tenant().to_owned();
                let response = self
                    .client
                    .call($path, &tenant, Kind::Read, self.timeout, |channel, meta| {
                        let req = meta.request(request.clone());
                        async move { AdminServiceClient::new(channel).$method(req).await }
                    })
                    .await?;
                Ok(response.into_inner())
            }
        )*}
    };
}

macro_rules! writes {
    ($($(#[$doc:meta])* $method:ident($req:ident) -> $resp:ident = $path:literal;)*) => {
        impl Admin<'_> {$(
            $(#[$doc])*
            ///
            /// Not retried (it may have committed); a committed write's revision is remembered
            /// for read-your-writes.
            pub async fn $method(&self, mut request: proto::$req) -> Result<proto::$resp, Error> {
                self.prepare(&mut request);
                let tenant = request.tenant().to_owned();
                let dry_run = request.dry_run();
                let response = self
                    .client
                    .call($path, &tenant, Kind::Write, self.timeout, move |channel, meta| {
                        let req = meta.request(request.clone());
                        async move { AdminServiceClient::new(channel).$method(req).await }
                    })
                    .await?
                    .into_inner();
                if !dry_run {
                    self.client.wrote(&tenant, &response.revision);
                }
                Ok(response)
            }
        )*}
    };
}

reads! {
    /// A tenant and its latest revision.
    get_tenant(GetTenantRequest) -> GetTenantResponse = "/authz.v1.AdminService/GetTenant";
    /// Every tenant, a page at a time (operator only).
    list_tenants(ListTenantsRequest) -> ListTenantsResponse = "/authz.v1.AdminService/ListTenants";
    /// A user with its groups, grants, limits and roles.
    get_user(GetUserRequest) -> GetUserResponse = "/authz.v1.AdminService/GetUser";
    /// A tenant's users (or one group's members), a page at a time.
    list_users(ListUsersRequest) -> ListUsersResponse = "/authz.v1.AdminService/ListUsers";
    /// A group with its permissions and member count.
    get_group(GetGroupRequest) -> GetGroupResponse = "/authz.v1.AdminService/GetGroup";
    /// A tenant's groups, a page at a time.
    list_groups(ListGroupsRequest) -> ListGroupsResponse = "/authz.v1.AdminService/ListGroups";
    /// The audit log, newest first, a page at a time.
    list_audit_events(ListAuditEventsRequest) -> ListAuditEventsResponse = "/authz.v1.AdminService/ListAuditEvents";
    /// The catalog's summary.
    get_catalog(GetCatalogRequest) -> GetCatalogResponse = "/authz.v1.AdminService/GetCatalog";
    /// The catalog's permissions.
    list_permissions(ListPermissionsRequest) -> ListPermissionsResponse = "/authz.v1.AdminService/ListPermissions";
    /// The catalog's actions.
    list_actions(ListActionsRequest) -> ListActionsResponse = "/authz.v1.AdminService/ListActions";
}

writes! {
    /// Creates a tenant (operator only).
    create_tenant(CreateTenantRequest) -> CreateTenantResponse = "/authz.v1.AdminService/CreateTenant";
    /// Creates or updates a user.
    upsert_user(UpsertUserRequest) -> UpsertUserResponse = "/authz.v1.AdminService/UpsertUser";
    /// Blocks or unblocks a user.
    set_user_status(SetUserStatusRequest) -> SetUserStatusResponse = "/authz.v1.AdminService/SetUserStatus";
    /// Imports users with groups and direct grants: all rows or none.
    import_users(ImportUsersRequest) -> ImportUsersResponse = "/authz.v1.AdminService/ImportUsers";
    /// Creates a custom group.
    create_group(CreateGroupRequest) -> CreateGroupResponse = "/authz.v1.AdminService/CreateGroup";
    /// Changes a custom group (by `update_mask`).
    update_group(UpdateGroupRequest) -> UpdateGroupResponse = "/authz.v1.AdminService/UpdateGroup";
    /// Deletes a custom group without members.
    delete_group(DeleteGroupRequest) -> DeleteGroupResponse = "/authz.v1.AdminService/DeleteGroup";
    /// Copies a group into a new custom group.
    duplicate_group(DuplicateGroupRequest) -> DuplicateGroupResponse = "/authz.v1.AdminService/DuplicateGroup";
    /// Adds users to a group.
    add_group_members(AddGroupMembersRequest) -> AddGroupMembersResponse = "/authz.v1.AdminService/AddGroupMembers";
    /// Removes users from a group.
    remove_group_members(RemoveGroupMembersRequest) -> RemoveGroupMembersResponse = "/authz.v1.AdminService/RemoveGroupMembers";
    /// Grants permissions directly to a user.
    grant_permissions(GrantPermissionsRequest) -> GrantPermissionsResponse = "/authz.v1.AdminService/GrantPermissions";
    /// Revokes a user's direct grants.
    revoke_permissions(RevokePermissionsRequest) -> RevokePermissionsResponse = "/authz.v1.AdminService/RevokePermissions";
    /// Limits a user to listed resources, or lifts the limit.
    set_restrictions(SetRestrictionsRequest) -> SetRestrictionsResponse = "/authz.v1.AdminService/SetRestrictions";
}
