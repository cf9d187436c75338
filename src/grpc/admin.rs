//! `authz.v1.AdminService`: validate → convert → call the application → convert back.
//!
//! One file: the service's 23 RPCs, each a few lines of convert → call → convert back over
//! `tenant_call`, read side by side; splitting them would scatter one trait impl.

use super::convert;
use super::pb::{self, admin_service_server::AdminService};
use super::status::to_status;
use crate::app::{Authz, GroupView};
use crate::error::Error;
use crate::gate::{self, Role};
use crate::ids::{By, GroupKey, Paging, TenantId, UserId, UserIds};
use crate::store::Committed;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct AdminApi {
    app: Arc<Authz>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// The largest response message the server sends: listings that could outgrow it fill a
    /// page only up to it.
    max_message_bytes: usize,
}

impl AdminApi {
    pub fn new(app: Arc<Authz>, metrics: Option<Arc<crate::metrics::Metrics>>) -> Self {
        Self {
            app,
            metrics,
            max_message_bytes: crate::server::ServerOptions::default().max_message_bytes,
        }
    }

    pub fn with_max_message_bytes(mut self, max: usize) -> Self {
        self.max_message_bytes = max;
        self
    }
    /// The status of a failed call. A call an admin rule refused is logged (who, what, which
    /// rule and what was missing; never a key) and counted, so escalation attempts show on a
    /// dashboard.
    fn fail(&self, method: &'static str, by: &By, e: Error) -> Status {
        if let Some(rule) = e.refused_by() {
            tracing::info!(
                method,
                actor = by.actor().map_or("(operator)", |a| a.as_str()),
                rule,
                reason = %e,
                "admin call refused"
            );
            if let Some(m) = &self.metrics {
                m.refusal(method, rule);
            }
        }
        to_status(e)
    }

    fn refuse(&self, method: &'static str, actor: &str, status: Status) -> Status {
        tracing::info!(
            method,
            actor = if actor.is_empty() {
                "(operator)"
            } else {
                actor
            },
            rule = "key",
            reason = status.message(),
            "admin call refused"
        );
        if let Some(m) = &self.metrics {
            m.refusal(method, "key");
        }
        status
    }
}
/// Audit events as one response holds them: in order, while their encoded size fits in
/// `budget` bytes; the page then ends early and the token continues after the last event
/// returned. An event too large for any response on its own is returned without its snapshots,
/// with a note saying so, rather than failing the listing.
fn fit_audit_page(
    events: Vec<crate::store::Change>,
    next: String,
    budget: usize,
) -> pb::ListAuditEventsResponse {
    use prost::Message;
    let mut out: Vec<pb::AuditEvent> = Vec::with_capacity(events.len());
    let mut used = 0usize;
    let mut cut = false;
    for change in events {
        let mut event = convert::audit_event(change);
        // The event, its field tag and its length prefix.
        let mut size = event.encoded_len() + 11;
        if used + size > budget {
            if !out.is_empty() {
                cut = true;
                break;
            }
            let note = serde_json::json!({
                "omitted": format!(
                    "this event's snapshots are {size} bytes, more than a response of {budget} bytes holds; raise --max-message-bytes to read them"
                )
            });
            event.before = Some(convert::json_struct(&note));
            event.after = Some(convert::json_struct(&note));
            size = event.encoded_len() + 11;
        }
        used += size;
        out.push(event);
    }
    let next_page_token = if cut {
        crate::validate::next_page_token(out.last().map(|e| e.revision.as_str()), true)
    } else {
        next
    };
    pb::ListAuditEventsResponse {
        events: out,
        next_page_token,
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// A tenant call's tenant and caller, validated.
struct Admitted {
    tenant: TenantId,
    by: By,
}

impl Admitted {
    /// A mutation by this caller, committed or only previewed.
    fn call(&self, dry_run: bool) -> crate::app::AdminCall {
        crate::app::AdminCall {
            by: self.by.clone(),
            mode: if dry_run {
                crate::app::WriteMode::DryRun
            } else {
                crate::app::WriteMode::Commit
            },
        }
    }
}

/// A mutation's response, which carries the write's preview.
trait WithPreview: prost::Message {
    fn preview_mut(&mut self) -> Option<&mut pb::Preview>;
}

macro_rules! with_preview {
    ($($t:ident),* $(,)?) => {
        $(impl WithPreview for pb::$t {
            fn preview_mut(&mut self) -> Option<&mut pb::Preview> {
                self.preview.as_mut()
            }
        })*
    };
}

with_preview!(
    UpsertUserResponse,
    ImportUsersResponse,
    SetUserStatusResponse,
    CreateGroupResponse,
    UpdateGroupResponse,
    DeleteGroupResponse,
    DuplicateGroupResponse,
    AddGroupMembersResponse,
    RemoveGroupMembersResponse,
    GrantPermissionsResponse,
    RevokePermissionsResponse,
    SetRestrictionsResponse
);

impl AdminApi {
    /// The start of every tenant call: its tenant recorded on the RPC's span, the caller's key
    /// allowed to make it as asked (an `admin` key must name an actor), and the tenant and the
    /// caller validated, once, into types.
    fn admit<R: TenantCall>(
        &self,
        method: &'static str,
        request: Request<R>,
    ) -> Result<(R, Admitted), Status> {
        let role = gate::role(&request);
        let r = request.into_inner();
        crate::telemetry::tenant(r.tenant_id());
        require_actor(role, r.actor_user_id())
            .map_err(|s| self.refuse(method, r.actor_user_id(), s))?;
        let admitted = TenantId::parse("tenant_id", r.tenant_id())
            .and_then(|tenant| {
                Ok(Admitted {
                    tenant,
                    by: By::parse("actor_user_id", r.actor_user_id())?,
                })
            })
            .map_err(|e| self.fail(method, &By::Operator, e))?;
        Ok((r, admitted))
    }

    /// A tenant call: admitted, then `call` with the application, the tenant and the caller.
    /// Whatever fails — the request's own fields as they are parsed, or the call — becomes the
    /// status that says what to fix, a refusal logged and counted.
    async fn tenant_call<R: TenantCall, T>(
        &self,
        method: &'static str,
        request: Request<R>,
        call: impl AsyncFnOnce(&Authz, &Admitted, R) -> crate::error::Result<T>,
    ) -> Result<(T, Admitted), Status> {
        let (r, a) = self.admit(method, request)?;
        match call(&self.app, &a, r).await {
            Ok(t) => Ok((t, a)),
            Err(e) => Err(self.fail(method, &a.by, e)),
        }
    }

    /// An operator-wide call: only an `operator` key may `what`.
    fn operator_call<R>(
        &self,
        method: &'static str,
        request: Request<R>,
        what: &str,
    ) -> Result<R, Status> {
        if gate::role(&request) != Role::Operator {
            return Err(self.refuse(
                method,
                "",
                Status::permission_denied(format!("only an `operator` key may {what}")),
            ));
        }
        Ok(request.into_inner())
    }

    /// An operator's call; its error becomes the status that says what to fix.
    async fn operator<T>(
        &self,
        method: &'static str,
        call: impl AsyncFnOnce() -> crate::error::Result<T>,
    ) -> Result<T, Status> {
        call()
            .await
            .map_err(|e| self.fail(method, &By::Operator, e))
    }

    /// A write's revision, and its preview as the caller may see it (an actor never sees
    /// internal permissions).
    fn written<T>(&self, done: &Committed<T>, a: &Admitted) -> (String, Option<pb::Preview>) {
        (
            convert::revision(done.revision),
            Some(convert::preview(
                self.app.catalog(),
                &done.preview,
                a.by.is_actor(),
            )),
        )
    }

    /// A group write's response: the group, the revision and the preview.
    fn group_written<R: WithPreview + super::answer::Answer>(
        &self,
        done: Committed<GroupView>,
        a: &Admitted,
        response: impl FnOnce(Option<pb::Group>, String, Option<pb::Preview>) -> R,
    ) -> Reply<R> {
        let (revision, preview) = self.written(&done, a);
        let group = Some(convert::group(self.app.catalog(), done.value));
        self.fitted(response(group, revision, preview))
    }

    /// A mutation's response within the message limit: a preview too large for it keeps the
    /// users that fit and says `truncated` (the write itself is committed either way).
    fn fitted<R: WithPreview + super::answer::Answer>(&self, mut response: R) -> Reply<R> {
        let budget = self.max_message_bytes.saturating_sub(1024);
        let mut excess = response.encoded_len().saturating_sub(budget);
        if let Some(preview) = response.preview_mut() {
            while excess > 0 {
                let Some(user) = preview.affected_users.pop() else {
                    break;
                };
                // The user, its field tag and its length prefix.
                excess = excess.saturating_sub(prost::Message::encoded_len(&user) + 4);
                preview.truncated = true;
            }
        }
        ok(response)
    }
}

/// An `admin` key acts on behalf of a staff user, whose permissions the rules then apply.
/// A tenant request made by an operator or on behalf of an acting user.
trait TenantCall {
    fn tenant_id(&self) -> &str;
    fn actor_user_id(&self) -> &str;
}

macro_rules! tenant_calls {
    ($($t:ty),* $(,)?) => {
        $(impl TenantCall for $t {
            fn tenant_id(&self) -> &str {
                &self.tenant_id
            }
            fn actor_user_id(&self) -> &str {
                &self.actor_user_id
            }
        })*
    };
}

tenant_calls!(
    pb::AddGroupMembersRequest,
    pb::CreateGroupRequest,
    pb::DeleteGroupRequest,
    pb::DuplicateGroupRequest,
    pb::GetGroupRequest,
    pb::GetTenantRequest,
    pb::GetUserRequest,
    pb::GrantPermissionsRequest,
    pb::ImportUsersRequest,
    pb::ListAuditEventsRequest,
    pb::ListGroupsRequest,
    pb::ListUsersRequest,
    pb::RemoveGroupMembersRequest,
    pb::RevokePermissionsRequest,
    pb::SetRestrictionsRequest,
    pb::SetUserStatusRequest,
    pb::UpdateGroupRequest,
    pb::UpsertUserRequest,
);

fn require_actor(role: Role, actor: &str) -> Result<(), Status> {
    if role == Role::Admin && actor.is_empty() {
        return Err(Status::permission_denied(
            "an `admin` key acts on behalf of a staff user: set actor_user_id (only operator keys may omit it)",
        ));
    }
    Ok(())
}

fn ok<T: super::answer::Answer>(t: T) -> Reply<T> {
    super::answer::respond(t)
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
        ok(pb::CreateTenantResponse {
            revision: convert::revision(t.revision),
            tenant: Some(convert::tenant(t)),
        })
    }

    async fn get_tenant(
        &self,
        request: Request<pb::GetTenantRequest>,
    ) -> Reply<pb::GetTenantResponse> {
        let (t, _) = self
            .tenant_call("GetTenant", request, async |app, a, _| {
                app.get_tenant(&a.tenant, &a.by).await
            })
            .await?;
        ok(pb::GetTenantResponse {
            tenant: Some(convert::tenant(t)),
        })
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
        ok(pb::ListTenantsResponse {
            tenants: tenants.into_iter().map(convert::tenant).collect(),
            next_page_token: next,
        })
    }

    async fn upsert_user(
        &self,
        request: Request<pb::UpsertUserRequest>,
    ) -> Reply<pb::UpsertUserResponse> {
        let (done, a) = self
            .tenant_call("UpsertUser", request, async |app, a, r| {
                let user = UserId::parse("user_id", r.user_id)?;
                let call = a.call(r.dry_run);
                app.upsert_user(&a.tenant, &call, &user, &r.display_name, &r.email)
                    .await
            })
            .await?;
        let (revision, preview) = self.written(&done, &a);
        self.fitted(pb::UpsertUserResponse {
            user: Some(convert::user(
                self.app.catalog(),
                &a.tenant,
                done.value,
                Vec::new(),
            )),
            revision,
            preview,
        })
    }

    async fn import_users(
        &self,
        request: Request<pb::ImportUsersRequest>,
    ) -> Reply<pb::ImportUsersResponse> {
        let (done, a) = self
            .tenant_call("ImportUsers", request, async |app, a, r| {
                let rows: Vec<crate::app::ImportInput> = r
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
                app.import_users(&a.tenant, &a.call(r.dry_run), &rows).await
            })
            .await?;
        let (revision, preview) = self.written(&done, &a);
        self.fitted(pb::ImportUsersResponse {
            imported: i32::try_from(done.value).unwrap_or(i32::MAX),
            revision,
            preview,
        })
    }

    async fn get_user(&self, request: Request<pb::GetUserRequest>) -> Reply<pb::GetUserResponse> {
        let (u, a) = self
            .tenant_call("GetUser", request, async |app, a, r| {
                let consistency = convert::consistency(r.consistency)?;
                let user = UserId::parse("user_id", r.user_id)?;
                app.get_user(&a.tenant, &a.by, &user, consistency).await
            })
            .await?;
        let roles = self.app.roles_of_set(&u.effective);
        ok(pb::GetUserResponse {
            user: Some(convert::user(self.app.catalog(), &a.tenant, u, roles)),
        })
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Reply<pb::ListUsersResponse> {
        let ((users, next), a) = self
            .tenant_call("ListUsers", request, async |app, a, r| {
                let consistency = convert::consistency(r.consistency)?;
                let group = match r.group_key.as_str() {
                    "" => None,
                    key => Some(GroupKey::parse("group_key", key)?),
                };
                let page = Paging::parse(r.page_size, &r.page_token)?;
                app.list_users(&a.tenant, &a.by, group.as_ref(), &page, consistency)
                    .await
            })
            .await?;
        let catalog = self.app.catalog();
        let users = users
            .into_iter()
            .map(|u| {
                let roles = self.app.roles_of_set(&u.effective);
                convert::user(catalog, &a.tenant, u, roles)
            })
            .collect();
        ok(pb::ListUsersResponse {
            users,
            next_page_token: next,
        })
    }

    async fn set_user_status(
        &self,
        request: Request<pb::SetUserStatusRequest>,
    ) -> Reply<pb::SetUserStatusResponse> {
        let (done, a) = self
            .tenant_call("SetUserStatus", request, async |app, a, r| {
                let status = convert::status_in(r.status)?;
                let user = UserId::parse("user_id", r.user_id)?;
                app.set_user_status(&a.tenant, &a.call(r.dry_run), &user, status)
                    .await
            })
            .await?;
        let (revision, preview) = self.written(&done, &a);
        self.fitted(pb::SetUserStatusResponse {
            user: Some(convert::user(
                self.app.catalog(),
                &a.tenant,
                done.value,
                Vec::new(),
            )),
            revision,
            preview,
        })
    }

    async fn create_group(
        &self,
        request: Request<pb::CreateGroupRequest>,
    ) -> Reply<pb::CreateGroupResponse> {
        let (done, a) = self
            .tenant_call("CreateGroup", request, async |app, a, r| {
                let input = convert::group_in(r.group);
                app.create_group(&a.tenant, &a.call(r.dry_run), &input)
                    .await
            })
            .await?;
        self.group_written(done, &a, |group, revision, preview| {
            pb::CreateGroupResponse {
                group,
                revision,
                preview,
            }
        })
    }

    async fn get_group(
        &self,
        request: Request<pb::GetGroupRequest>,
    ) -> Reply<pb::GetGroupResponse> {
        let (g, _) = self
            .tenant_call("GetGroup", request, async |app, a, r| {
                let key = GroupKey::parse("group_key", r.group_key)?;
                app.get_group(&a.tenant, &a.by, &key).await
            })
            .await?;
        ok(pb::GetGroupResponse {
            group: Some(convert::group(self.app.catalog(), g)),
        })
    }

    async fn list_groups(
        &self,
        request: Request<pb::ListGroupsRequest>,
    ) -> Reply<pb::ListGroupsResponse> {
        let ((groups, next), _) = self
            .tenant_call("ListGroups", request, async |app, a, r| {
                let page = Paging::parse(r.page_size, &r.page_token)?;
                app.list_groups(&a.tenant, &a.by, &page).await
            })
            .await?;
        let catalog = self.app.catalog();
        ok(pb::ListGroupsResponse {
            groups: groups
                .into_iter()
                .map(|g| convert::group(catalog, g))
                .collect(),
            next_page_token: next,
        })
    }

    async fn update_group(
        &self,
        request: Request<pb::UpdateGroupRequest>,
    ) -> Reply<pb::UpdateGroupResponse> {
        let (done, a) = self
            .tenant_call("UpdateGroup", request, async |app, a, r| {
                let key = GroupKey::parse("group_key", r.group_key)?;
                let mask = r.update_mask.map(|m| m.paths).unwrap_or_default();
                let input = convert::group_in(r.group);
                let expected = convert::expected_version(r.expected_version)?;
                let call = a.call(r.dry_run);
                app.update_group(&a.tenant, &call, &key, &input, &mask, expected)
                    .await
            })
            .await?;
        self.group_written(done, &a, |group, revision, preview| {
            pb::UpdateGroupResponse {
                group,
                revision,
                preview,
            }
        })
    }

    async fn delete_group(
        &self,
        request: Request<pb::DeleteGroupRequest>,
    ) -> Reply<pb::DeleteGroupResponse> {
        let (done, a) = self
            .tenant_call("DeleteGroup", request, async |app, a, r| {
                let key = GroupKey::parse("group_key", r.group_key)?;
                let expected = convert::expected_version(r.expected_version)?;
                app.delete_group(&a.tenant, &a.call(r.dry_run), &key, expected)
                    .await
            })
            .await?;
        let (revision, preview) = self.written(&done, &a);
        self.fitted(pb::DeleteGroupResponse { revision, preview })
    }

    async fn duplicate_group(
        &self,
        request: Request<pb::DuplicateGroupRequest>,
    ) -> Reply<pb::DuplicateGroupResponse> {
        let (done, a) = self
            .tenant_call("DuplicateGroup", request, async |app, a, r| {
                let input = crate::app::DuplicateInput {
                    source_group_key: GroupKey::parse("source_group_key", r.source_group_key)?,
                    new_key: r.new_key,
                    new_name: r.new_name,
                    copy_permissions: r.copy_permissions,
                    copy_scoped_grants: r.copy_scoped_grants,
                    copy_members: r.copy_members,
                };
                app.duplicate_group(&a.tenant, &a.call(r.dry_run), &input)
                    .await
            })
            .await?;
        self.group_written(done, &a, |group, revision, preview| {
            pb::DuplicateGroupResponse {
                group,
                revision,
                preview,
            }
        })
    }

    async fn add_group_members(
        &self,
        request: Request<pb::AddGroupMembersRequest>,
    ) -> Reply<pb::AddGroupMembersResponse> {
        let (done, a) = self
            .tenant_call("AddGroupMembers", request, async |app, a, r| {
                let key = GroupKey::parse("group_key", r.group_key)?;
                let users = UserIds::parse("user_ids", r.user_ids)?;
                app.add_members(&a.tenant, &a.call(r.dry_run), &key, &users)
                    .await
            })
            .await?;
        let (revision, preview) = self.written(&done, &a);
        self.fitted(pb::AddGroupMembersResponse { revision, preview })
    }

    async fn remove_group_members(
        &self,
        request: Request<pb::RemoveGroupMembersRequest>,
    ) -> Reply<pb::RemoveGroupMembersResponse> {
        let (done, a) = self
            .tenant_call("RemoveGroupMembers", request, async |app, a, r| {
                let key = GroupKey::parse("group_key", r.group_key)?;
                let users = UserIds::parse("user_ids", r.user_ids)?;
                app.remove_members(&a.tenant, &a.call(r.dry_run), &key, &users)
                    .await
            })
            .await?;
        let (revision, preview) = self.written(&done, &a);
        self.fitted(pb::RemoveGroupMembersResponse { revision, preview })
    }

    async fn grant_permissions(
        &self,
        request: Request<pb::GrantPermissionsRequest>,
    ) -> Reply<pb::GrantPermissionsResponse> {
        let (done, a) = self
            .tenant_call("GrantPermissions", request, async |app, a, r| {
                let user = UserId::parse("user_id", r.user_id)?;
                let resource = convert::resource_in(r.resource);
                let call = a.call(r.dry_run);
                app.grant(&a.tenant, &call, &user, &r.permissions, resource.as_ref())
                    .await
            })
            .await?;
        let (revision, preview) = self.written(&done, &a);
        self.fitted(pb::GrantPermissionsResponse { revision, preview })
    }

    async fn revoke_permissions(
        &self,
        request: Request<pb::RevokePermissionsRequest>,
    ) -> Reply<pb::RevokePermissionsResponse> {
        let (done, a) = self
            .tenant_call("RevokePermissions", request, async |app, a, r| {
                let user = UserId::parse("user_id", r.user_id)?;
                let resource = convert::resource_in(r.resource);
                let call = a.call(r.dry_run);
                app.revoke(&a.tenant, &call, &user, &r.permissions, resource.as_ref())
                    .await
            })
            .await?;
        let (revision, preview) = self.written(&done, &a);
        self.fitted(pb::RevokePermissionsResponse { revision, preview })
    }

    async fn set_restrictions(
        &self,
        request: Request<pb::SetRestrictionsRequest>,
    ) -> Reply<pb::SetRestrictionsResponse> {
        let (done, a) = self
            .tenant_call("SetRestrictions", request, async |app, a, r| {
                let user = UserId::parse("user_id", r.user_id)?;
                let call = a.call(r.dry_run);
                app.set_restrictions(
                    &a.tenant,
                    &call,
                    &user,
                    &r.resource_type,
                    &r.resource_ids,
                    r.clear,
                )
                .await
            })
            .await?;
        let (revision, preview) = self.written(&done, &a);
        self.fitted(pb::SetRestrictionsResponse { revision, preview })
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Reply<pb::ListAuditEventsResponse> {
        let ((events, next), _) = self
            .tenant_call("ListAuditEvents", request, async |app, a, r| {
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
                app.list_audit(&a.tenant, &a.by, filter).await
            })
            .await?;
        // What the response may hold, less room for its own framing and the page token.
        let budget = self.max_message_bytes.saturating_sub(1024);
        ok(fit_audit_page(events, next, budget))
    }

    async fn get_catalog(
        &self,
        request: Request<pb::GetCatalogRequest>,
    ) -> Reply<pb::GetCatalogResponse> {
        // Internal (staff-only) groups and permissions exist only for operator keys.
        let operator = gate::role(&request) == Role::Operator;
        let c = self.app.catalog();
        ok(pb::GetCatalogResponse {
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
        let operator = gate::role(&request) == Role::Operator;
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
        ok(pb::ListPermissionsResponse { permissions })
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
        ok(pb::ListActionsResponse { actions })
    }
}
