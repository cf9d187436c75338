//! `authz.v1.AdminService`: validate → convert → call the application → convert back. Every
//! tenant RPC goes through [`AdminApi::serve`] (admission, one error mapping, a response within
//! the message limit); what each does itself is its `TenantRpc` in `rpcs.rs`, which also holds
//! the service's impl.

use super::convert;
use super::pb;
use super::status::to_status;
use crate::app::{Authz, GroupView};
use crate::error::Error;
use crate::gate::{self, Role};
use crate::ids::{By, TenantId};
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

impl AdminApi {
    /// The start of every tenant call: its tenant recorded on the RPC's span, the caller's key
    /// allowed to make it as asked (an `admin` key must name an actor), and the tenant and the
    /// caller validated, once, into types.
    fn admit<R: TenantCall>(
        &self,
        method: &'static str,
        request: Request<R>,
    ) -> Result<(R, Admitted), Status> {
        let role = gate::role();
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
        if gate::role() != Role::Operator {
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
        super::answer::respond(response)
    }
}

/// An `admin` key acts on behalf of a staff user, whose permissions the rules then apply.
/// A tenant request made by an operator or on behalf of an acting user.
trait TenantCall {
    fn tenant_id(&self) -> &str;
    fn actor_user_id(&self) -> &str;
}

fn require_actor(role: Role, actor: &str) -> Result<(), Status> {
    if role == Role::Admin && actor.is_empty() {
        return Err(Status::permission_denied(
            "an `admin` key acts on behalf of a staff user: set actor_user_id (only operator keys may omit it)",
        ));
    }
    Ok(())
}
