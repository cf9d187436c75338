//! `authz.v1.AdminService`: validate → convert → call the application → convert back.

use super::convert;
use super::pb::{self, admin_service_server::AdminService};
use super::status::to_status;
use crate::app::Authz;
use crate::error::Error;
use crate::gate::{self, Role};
use crate::ids::{By, GroupKey, Paging, TenantId, UserId, UserIds};
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
    /// A mutation's response within the message limit: a preview too large for it keeps the
    /// users that fit and says `truncated` (the write itself is committed either way).
    /// The start of every tenant call: the request, its tenant recorded on the RPC's span, and
    /// the caller's key allowed to make it as asked (an `admin` key must name an actor).
    /// The tenant and the caller are validated here, once, into types.
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

    /// A write's preview as the caller may see it (an actor never sees internal permissions).
    /// An input validated at the edge, or the status that says what to fix.
    fn valid<T>(
        &self,
        method: &'static str,
        by: &By,
        v: crate::error::Result<T>,
    ) -> Result<T, Status> {
        v.map_err(|e| self.fail(method, by, e))
    }

    fn preview(&self, preview: &crate::store::Preview, by: &By) -> Option<pb::Preview> {
        Some(convert::preview(self.app.catalog(), preview, by.is_actor()))
    }

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
        if gate::role(&request) != Role::Operator {
            return Err(self.refuse(
                METHOD,
                "",
                Status::permission_denied("only an `operator` key may create tenants"),
            ));
        }
        let r = request.into_inner();
        crate::telemetry::tenant(&r.tenant_id);
        let tenant = self.valid(
            METHOD,
            &By::Operator,
            TenantId::parse("tenant_id", r.tenant_id.as_str()),
        )?;
        let t = self
            .app
            .create_tenant(&tenant, &r.display_name)
            .await
            .map_err(|e| self.fail(METHOD, &By::Operator, e))?;
        ok(pb::CreateTenantResponse {
            revision: convert::revision(t.revision),
            tenant: Some(convert::tenant(t)),
        })
    }

    async fn get_tenant(
        &self,
        request: Request<pb::GetTenantRequest>,
    ) -> Reply<pb::GetTenantResponse> {
        const METHOD: &str = "GetTenant";
        let (_, a) = self.admit(METHOD, request)?;
        let t = self
            .app
            .get_tenant(&a.tenant, &a.by)
            .await
            .map_err(|e| self.fail(METHOD, &a.by, e))?;
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
        if gate::role(&request) != Role::Operator {
            return Err(self.refuse(
                METHOD,
                "",
                Status::permission_denied("only an `operator` key may list tenants"),
            ));
        }
        let r = request.into_inner();
        let page = self.valid(
            METHOD,
            &By::Operator,
            Paging::parse(r.page_size, &r.page_token),
        )?;
        let (tenants, next) = self
            .app
            .list_tenants(&page)
            .await
            .map_err(|e| self.fail(METHOD, &By::Operator, e))?;
        ok(pb::ListTenantsResponse {
            tenants: tenants.into_iter().map(convert::tenant).collect(),
            next_page_token: next,
        })
    }

    async fn upsert_user(
        &self,
        request: Request<pb::UpsertUserRequest>,
    ) -> Reply<pb::UpsertUserResponse> {
        const METHOD: &str = "UpsertUser";
        let (r, a) = self.admit(METHOD, request)?;
        let call = a.call(r.dry_run);
        let user = self.valid(METHOD, &a.by, UserId::parse("user_id", r.user_id.as_str()))?;
        let done = self
            .app
            .upsert_user(&a.tenant, &call, &user, &r.display_name, &r.email)
            .await
            .map_err(|e| self.fail(METHOD, &a.by, e))?;
        self.fitted(pb::UpsertUserResponse {
            user: Some(convert::user(
                self.app.catalog(),
                &r.tenant_id,
                done.value,
                Vec::new(),
            )),
            revision: convert::revision(done.revision),
            preview: self.preview(&done.preview, &a.by),
        })
    }

    async fn import_users(
        &self,
        request: Request<pb::ImportUsersRequest>,
    ) -> Reply<pb::ImportUsersResponse> {
        const METHOD: &str = "ImportUsers";
        let (r, a) = self.admit(METHOD, request)?;
        let call = a.call(r.dry_run);
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
        let done = self
            .app
            .import_users(&a.tenant, &call, &rows)
            .await
            .map_err(|e| self.fail(METHOD, &a.by, e))?;
        self.fitted(pb::ImportUsersResponse {
            imported: i32::try_from(done.value).unwrap_or(i32::MAX),
            revision: convert::revision(done.revision),
            preview: self.preview(&done.preview, &a.by),
        })
    }

    async fn get_user(&self, request: Request<pb::GetUserRequest>) -> Reply<pb::GetUserResponse> {
        const METHOD: &str = "GetUser";
        let (r, a) = self.admit(METHOD, request)?;
        let consistency =
            convert::consistency(r.consistency.clone()).map_err(|e| self.fail(METHOD, &a.by, e))?;
        let user = self.valid(METHOD, &a.by, UserId::parse("user_id", r.user_id.as_str()))?;
        let u = self
            .app
            .get_user(&a.tenant, &a.by, &user, consistency)
            .await
            .map_err(|e| self.fail(METHOD, &a.by, e))?;
        let roles = self.app.roles_of_set(&u.effective);
        ok(pb::GetUserResponse {
            user: Some(convert::user(self.app.catalog(), &r.tenant_id, u, roles)),
        })
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Reply<pb::ListUsersResponse> {
        const METHOD: &str = "ListUsers";
        let (r, a) = self.admit(METHOD, request)?;
        let consistency =
            convert::consistency(r.consistency.clone()).map_err(|e| self.fail(METHOD, &a.by, e))?;
        let group = if r.group_key.is_empty() {
            None
        } else {
            Some(self.valid(
                METHOD,
                &a.by,
                GroupKey::parse("group_key", r.group_key.as_str()),
            )?)
        };
        let page = self.valid(METHOD, &a.by, Paging::parse(r.page_size, &r.page_token))?;
        let (users, next) = self
            .app
            .list_users(&a.tenant, &a.by, group.as_ref(), &page, consistency)
            .await
            .map_err(|e| self.fail(METHOD, &a.by, e))?;
        let catalog = self.app.catalog();
        let mut out = Vec::with_capacity(users.len());
        for u in users {
            let roles = self.app.roles_of_set(&u.effective);
            out.push(convert::user(catalog, &r.tenant_id, u, roles));
        }
        ok(pb::ListUsersResponse {
            users: out,
            next_page_token: next,
        })
    }

    async fn set_user_status(
        &self,
        request: Request<pb::SetUserStatusRequest>,
    ) -> Reply<pb::SetUserStatusResponse> {
        const METHOD: &str = "SetUserStatus";
        let (r, a) = self.admit(METHOD, request)?;
        let call = a.call(r.dry_run);
        let status = convert::status_in(r.status).map_err(|e| self.fail(METHOD, &a.by, e))?;
        let user = self.valid(METHOD, &a.by, UserId::parse("user_id", r.user_id.as_str()))?;
        let done = self
            .app
            .set_user_status(&a.tenant, &call, &user, status)
            .await
            .map_err(|e| self.fail(METHOD, &a.by, e))?;
        self.fitted(pb::SetUserStatusResponse {
            user: Some(convert::user(
                self.app.catalog(),
                &r.tenant_id,
                done.value,
                Vec::new(),
            )),
            revision: convert::revision(done.revision),
            preview: self.preview(&done.preview, &a.by),
        })
    }

    async fn create_group(
        &self,
        request: Request<pb::CreateGroupRequest>,
    ) -> Reply<pb::CreateGroupResponse> {
        const METHOD: &str = "CreateGroup";
        let (r, a) = self.admit(METHOD, request)?;
        let call = a.call(r.dry_run);
        let input = convert::group_in(r.group);
        let done = self
            .app
            .create_group(&a.tenant, &call, &input)
            .await
            .map_err(|e| self.fail(METHOD, &a.by, e))?;
        self.fitted(pb::CreateGroupResponse {
            group: Some(convert::group(self.app.catalog(), done.value)),
            revision: convert::revision(done.revision),
            preview: self.preview(&done.preview, &a.by),
        })
    }

    async fn get_group(
        &self,
        request: Request<pb::GetGroupRequest>,
    ) -> Reply<pb::GetGroupResponse> {
        const METHOD: &str = "GetGroup";
        let (r, a) = self.admit(METHOD, request)?;
        let key = self.valid(
            METHOD,
            &a.by,
            GroupKey::parse("group_key", r.group_key.as_str()),
        )?;
        let g = self
            .app
            .get_group(&a.tenant, &a.by, &key)
            .await
            .map_err(|e| self.fail(METHOD, &a.by, e))?;
        ok(pb::GetGroupResponse {
            group: Some(convert::group(self.app.catalog(), g)),
        })
    }

    async fn list_groups(
        &self,
        request: Request<pb::ListGroupsRequest>,
    ) -> Reply<pb::ListGroupsResponse> {
        const METHOD: &str = "ListGroups";
        let (r, a) = self.admit(METHOD, request)?;
        let page = self.valid(METHOD, &a.by, Paging::parse(r.page_size, &r.page_token))?;
        let (groups, next) = self
            .app
            .list_groups(&a.tenant, &a.by, &page)
            .await
            .map_err(|e| self.fail(METHOD, &a.by, e))?;
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
        const METHOD: &str = "UpdateGroup";
        let (r, a) = self.admit(METHOD, request)?;
        let call = a.call(r.dry_run);
        let key = self.valid(
            METHOD,
            &a.by,
            GroupKey::parse("group_key", r.group_key.as_str()),
        )?;
        let mask = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let input = convert::group_in(r.group);
        let done = self
            .app
            .update_group(
                &a.tenant,
                &call,
                &key,
                &input,
                &mask,
                convert::expected_version(r.expected_version)
                    .map_err(|e| self.fail(METHOD, &a.by, e))?,
            )
            .await
            .map_err(|e| self.fail(METHOD, &a.by, e))?;
        self.fitted(pb::UpdateGroupResponse {
            group: Some(convert::group(self.app.catalog(), done.value)),
            revision: convert::revision(done.revision),
            preview: self.preview(&done.preview, &a.by),
        })
    }

    async fn delete_group(
        &self,
        request: Request<pb::DeleteGroupRequest>,
    ) -> Reply<pb::DeleteGroupResponse> {
        const METHOD: &str = "DeleteGroup";
        let (r, a) = self.admit(METHOD, request)?;
        let call = a.call(r.dry_run);
        let expected = convert::expected_version(r.expected_version)
            .map_err(|e| self.fail(METHOD, &a.by, e))?;
        let key = self.valid(
            METHOD,
            &a.by,
            GroupKey::parse("group_key", r.group_key.as_str()),
        )?;
        let done = self
            .app
            .delete_group(&a.tenant, &call, &key, expected)
            .await
            .map_err(|e| self.fail(METHOD, &a.by, e))?;
        self.fitted(pb::DeleteGroupResponse {
            revision: convert::revision(done.revision),
            preview: self.preview(&done.preview, &a.by),
        })
    }

    async fn duplicate_group(
        &self,
        request: Request<pb::DuplicateGroupRequest>,
    ) -> Reply<pb::DuplicateGroupResponse> {
        const METHOD: &str = "DuplicateGroup";
        let (r, a) = self.admit(METHOD, request)?;
        let call = a.call(r.dry_run);
        let input = crate::app::DuplicateInput {
            source_group_key: self.valid(
                METHOD,
                &a.by,
                GroupKey::parse("source_group_key", r.source_group_key),
            )?,
            new_key: r.new_key,
            new_name: r.new_name,
            copy_permissions: r.copy_permissions,
            copy_scoped_grants: r.copy_scoped_grants,
            copy_members: r.copy_members,
        };
        let done = self
            .app
            .duplicate_group(&a.tenant, &call, &input)
            .await
            .map_err(|e| self.fail(METHOD, &a.by, e))?;
        self.fitted(pb::DuplicateGroupResponse {
            group: Some(convert::group(self.app.catalog(), done.value)),
            revision: convert::revision(done.revision),
            preview: self.preview(&done.preview, &a.by),
        })
    }

    async fn add_group_members(
        &self,
        request: Request<pb::AddGroupMembersRequest>,
    ) -> Reply<pb::AddGroupMembersResponse> {
        const METHOD: &str = "AddGroupMembers";
        let (r, a) = self.admit(METHOD, request)?;
        let call = a.call(r.dry_run);
        let key = self.valid(
            METHOD,
            &a.by,
            GroupKey::parse("group_key", r.group_key.as_str()),
        )?;
        let users = self.valid(METHOD, &a.by, UserIds::parse("user_ids", r.user_ids))?;
        let done = self
            .app
            .add_members(&a.tenant, &call, &key, &users)
            .await
            .map_err(|e| self.fail(METHOD, &a.by, e))?;
        self.fitted(pb::AddGroupMembersResponse {
            revision: convert::revision(done.revision),
            preview: self.preview(&done.preview, &a.by),
        })
    }

    async fn remove_group_members(
        &self,
        request: Request<pb::RemoveGroupMembersRequest>,
    ) -> Reply<pb::RemoveGroupMembersResponse> {
        const METHOD: &str = "RemoveGroupMembers";
        let (r, a) = self.admit(METHOD, request)?;
        let call = a.call(r.dry_run);
        let key = self.valid(
            METHOD,
            &a.by,
            GroupKey::parse("group_key", r.group_key.as_str()),
        )?;
        let users = self.valid(METHOD, &a.by, UserIds::parse("user_ids", r.user_ids))?;
        let done = self
            .app
            .remove_members(&a.tenant, &call, &key, &users)
            .await
            .map_err(|e| self.fail(METHOD, &a.by, e))?;
        self.fitted(pb::RemoveGroupMembersResponse {
            revision: convert::revision(done.revision),
            preview: self.preview(&done.preview, &a.by),
        })
    }

    async fn grant_permissions(
        &self,
        request: Request<pb::GrantPermissionsRequest>,
    ) -> Reply<pb::GrantPermissionsResponse> {
        const METHOD: &str = "GrantPermissions";
        let (r, a) = self.admit(METHOD, request)?;
        let call = a.call(r.dry_run);
        let resource = convert::resource_in(r.resource);
        let user = self.valid(METHOD, &a.by, UserId::parse("user_id", r.user_id.as_str()))?;
        let done = self
            .app
            .grant(&a.tenant, &call, &user, &r.permissions, resource.as_ref())
            .await
            .map_err(|e| self.fail(METHOD, &a.by, e))?;
        self.fitted(pb::GrantPermissionsResponse {
            revision: convert::revision(done.revision),
            preview: self.preview(&done.preview, &a.by),
        })
    }

    async fn revoke_permissions(
        &self,
        request: Request<pb::RevokePermissionsRequest>,
    ) -> Reply<pb::RevokePermissionsResponse> {
        const METHOD: &str = "RevokePermissions";
        let (r, a) = self.admit(METHOD, request)?;
        let call = a.call(r.dry_run);
        let resource = convert::resource_in(r.resource);
        let user = self.valid(METHOD, &a.by, UserId::parse("user_id", r.user_id.as_str()))?;
        let done = self
            .app
            .revoke(&a.tenant, &call, &user, &r.permissions, resource.as_ref())
            .await
            .map_err(|e| self.fail(METHOD, &a.by, e))?;
        self.fitted(pb::RevokePermissionsResponse {
            revision: convert::revision(done.revision),
            preview: self.preview(&done.preview, &a.by),
        })
    }

    async fn set_restrictions(
        &self,
        request: Request<pb::SetRestrictionsRequest>,
    ) -> Reply<pb::SetRestrictionsResponse> {
        const METHOD: &str = "SetRestrictions";
        let (r, a) = self.admit(METHOD, request)?;
        let call = a.call(r.dry_run);
        let user = self.valid(METHOD, &a.by, UserId::parse("user_id", r.user_id.as_str()))?;
        let done = self
            .app
            .set_restrictions(
                &a.tenant,
                &call,
                &user,
                &r.resource_type,
                &r.resource_ids,
                r.clear,
            )
            .await
            .map_err(|e| self.fail(METHOD, &a.by, e))?;
        self.fitted(pb::SetRestrictionsResponse {
            revision: convert::revision(done.revision),
            preview: self.preview(&done.preview, &a.by),
        })
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Reply<pb::ListAuditEventsResponse> {
        const METHOD: &str = "ListAuditEvents";
        let (r, a) = self.admit(METHOD, request)?;
        let actor = if r.filter_actor_user_id.is_empty() {
            None
        } else {
            Some(self.valid(
                METHOD,
                &a.by,
                UserId::parse("filter_actor_user_id", r.filter_actor_user_id),
            )?)
        };
        let filter = crate::app::AuditFilter {
            actor,
            target: Some(r.filter_target).filter(|t| !t.is_empty()),
            since: convert::time_in("since", r.since).map_err(|e| self.fail(METHOD, &a.by, e))?,
            until: convert::time_in("until", r.until).map_err(|e| self.fail(METHOD, &a.by, e))?,
            page: self.valid(METHOD, &a.by, Paging::parse(r.page_size, &r.page_token))?,
        };
        let (events, next) = self
            .app
            .list_audit(&a.tenant, &a.by, filter)
            .await
            .map_err(|e| self.fail(METHOD, &a.by, e))?;
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
        let by = self.valid(
            METHOD,
            &By::Operator,
            By::parse("actor_user_id", r.actor_user_id.as_str()),
        )?;
        self.valid(METHOD, &by, crate::validate::text("section", &r.section))?;
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
