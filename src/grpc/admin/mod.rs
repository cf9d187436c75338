//! `authz.v1.AdminService`: validate → convert → call the application → convert back. Every
//! tenant RPC goes through [`AdminApi::serve`] (admission, one error mapping, a response within
//! the message limit); what each does itself is its `TenantRpc` in `rpcs.rs`.

use super::convert;
use super::pb::{self, admin_service_server::AdminService};
use super::status::to_status;
use crate::app::{Authz, GroupView};
use crate::error::Error;
use crate::gate::{self, Role};
use crate::ids::{By, Paging, TenantId};
use crate::store::Committed;
use std::sync::Arc;
use tonic::{Request, Response, Status};

mod rpcs;

use rpcs::TenantRpc;

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

/// A response, which may carry a write's preview (`None` for reads).
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

macro_rules! without_preview {
    ($($t:ident),* $(,)?) => {
        $(impl WithPreview for pb::$t {
            fn preview_mut(&mut self) -> Option<&mut pb::Preview> {
                None
            }
        })*
    };
}

without_preview!(
    GetTenantResponse,
    GetUserResponse,
    ListUsersResponse,
    GetGroupResponse,
    ListGroupsResponse,
    ListAuditEventsResponse,
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

    /// Every tenant RPC: admitted, then its own `call`; whatever fails — the request's own
    /// fields as they are parsed, or the call — becomes the status that says what to fix, a
    /// refusal logged and counted; a write's preview is cut to fit the message limit.
    async fn serve<R: TenantRpc>(&self, request: Request<R>) -> Reply<R::Response> {
        let (r, a) = self.admit(R::METHOD, request)?;
        match r.call(self, &a).await {
            Ok(response) => self.fitted(response),
            Err(e) => Err(self.fail(R::METHOD, &a.by, e)),
        }
    }

    /// A user as the response shows it, with its roles.
    fn user(&self, a: &Admitted, info: crate::store::UserInfo, roles: Vec<String>) -> pb::User {
        convert::user(self.app.catalog(), &a.tenant, info, roles)
    }

    /// A user as a read shows it, with the roles its effective permissions hold.
    fn user_with_roles(&self, a: &Admitted, info: crate::store::UserInfo) -> pb::User {
        let roles = self.app.roles_of_set(&info.effective);
        self.user(a, info, roles)
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

    /// A group write's answer: the group, the revision and the preview.
    fn group_written(
        &self,
        done: Committed<GroupView>,
        a: &Admitted,
    ) -> (Option<pb::Group>, String, Option<pb::Preview>) {
        let (revision, preview) = self.written(&done, a);
        let group = Some(convert::group(self.app.catalog(), done.value));
        (group, revision, preview)
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
        ok(pb::ListTenantsResponse {
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
