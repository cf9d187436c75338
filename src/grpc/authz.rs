//! `authz.v1.AuthzService`: validate → convert → call the application → convert back.

use super::convert;
use super::pb::{self, authz_service_server::AuthzService};
use super::status::{code, to_status};
use super::watch::{WatchHub, WatchStream};
use crate::app::{Authz, CheckInput, CheckNow, TargetInput};
use crate::decisions::Decision;
use crate::ids::{TenantId, UserId};
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct AuthzApi {
    app: Arc<Authz>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    watch: Arc<WatchHub>,
    decisions: Option<Arc<crate::decisions::DecisionLog>>,
}

impl AuthzApi {
    pub fn new(
        app: Arc<Authz>,
        metrics: Option<Arc<crate::metrics::Metrics>>,
        watch: Arc<WatchHub>,
    ) -> Self {
        Self {
            app,
            metrics,
            watch,
            decisions: None,
        }
    }

    /// Logs every decided check to `log`.
    pub fn with_decision_log(mut self, log: Option<Arc<crate::decisions::DecisionLog>>) -> Self {
        self.decisions = log;
        self
    }

    fn decided(&self, allowed: bool) {
        if let Some(m) = &self.metrics {
            m.decision(allowed);
        }
    }
}

fn check_target(t: Option<pb::check_request::Target>) -> Option<TargetInput> {
    use pb::check_request::Target;
    t.map(|t| match t {
        Target::Permission(k) => TargetInput::Permission(k),
        Target::Action(k) => TargetInput::Action(k),
        Target::Expression(e) => TargetInput::Expression(e),
    })
}

fn item_target(t: Option<pb::batch_check_item::Target>) -> Option<TargetInput> {
    use pb::batch_check_item::Target;
    t.map(|t| match t {
        Target::Permission(k) => TargetInput::Permission(k),
        Target::Action(k) => TargetInput::Action(k),
        Target::Expression(e) => TargetInput::Expression(e),
    })
}

#[tonic::async_trait]
impl AuthzService for AuthzApi {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let r = request.into_inner();
        crate::telemetry::tenant(&r.tenant_id);
        // Limits before the database: a refused stream costs no database work.
        let tenant = TenantId::parse("tenant_id", r.tenant_id).map_err(to_status)?;
        let subscription = self.watch.subscribe(&tenant)?;
        let after = self
            .app
            .watch_start(&tenant, &r.after_revision)
            .await
            .map_err(to_status)?;
        let stream = self.watch.follow(self.app.clone(), subscription, after);
        let mut response = Response::new(stream);
        // Where the stream starts, so a client can resume from it before the first change.
        if let Ok(value) = convert::revision(after).parse() {
            response
                .metadata_mut()
                .insert(convert::WATCH_AFTER_REVISION, value);
        }
        Ok(response)
    }

    async fn check(
        &self,
        request: Request<pb::CheckRequest>,
    ) -> Result<Response<pb::CheckResponse>, Status> {
        let role = crate::gate::role();
        let r = request.into_inner();
        crate::telemetry::tenant(&r.tenant_id);
        let tenant = TenantId::parse("tenant_id", r.tenant_id).map_err(to_status)?;
        let consistency = convert::consistency(r.consistency).map_err(to_status)?;
        let input = CheckInput {
            user_id: r.user_id,
            target: check_target(r.target),
            resource: convert::resource_in(r.resource),
            context: r.context,
            explain: r.explain,
        };
        // A cache hit is decided here and now; only a read of the database waits, in a future
        // of its own, so this one stays small.
        let (checked, revision) = match self.app.check_now(&tenant, &input, consistency) {
            CheckNow::Decided(decided) => decided,
            CheckNow::Read(pending) => {
                Box::pin(self.app.check_read(&tenant, &input, consistency, pending)).await
            }
        }
        .map_err(to_status)?;
        let catalog = self.app.catalog();
        self.decided(checked.decision.allowed);
        let response = pb::CheckResponse {
            allowed: checked.decision.allowed,
            decision: convert::decision(checked.decision.allowed).into(),
            missing_permissions: convert::missing(catalog, &checked),
            denied_by_restriction: convert::restriction_denial(catalog, &checked),
            revision: convert::revision(revision),
            explanation: checked
                .decision
                .explanation
                .as_ref()
                .map(|e| convert::explanation(catalog, e, checked.resource.as_ref())),
        };
        if let Some(log) = &self.decisions {
            log.record(&Decision {
                method: "Check",
                role: role.name(),
                tenant: &tenant,
                user: &input.user_id,
                target: input.target.as_ref(),
                resource: input.resource.as_ref(),
                context: &input.context,
                allowed: response.allowed,
                missing: &response.missing_permissions,
                restricted_by: response
                    .denied_by_restriction
                    .as_ref()
                    .map(|d| d.resource_type.as_str()),
                revision,
                item: None,
            });
        }
        super::answer::respond(response)
    }

    async fn batch_check(
        &self,
        request: Request<pb::BatchCheckRequest>,
    ) -> Result<Response<pb::BatchCheckResponse>, Status> {
        let role = crate::gate::role();
        let r = request.into_inner();
        crate::telemetry::tenant(&r.tenant_id);
        let tenant = TenantId::parse("tenant_id", r.tenant_id).map_err(to_status)?;
        let consistency = convert::consistency(r.consistency).map_err(to_status)?;
        let items: Vec<CheckInput> = r
            .items
            .into_iter()
            .map(|i| CheckInput {
                user_id: i.user_id,
                target: item_target(i.target),
                resource: convert::resource_in(i.resource),
                context: i.context.into_iter().collect(),
                explain: i.explain,
            })
            .collect();
        let (results, revision) = self
            .app
            .batch_check(&tenant, &items, consistency)
            .await
            .map_err(to_status)?;
        let catalog = self.app.catalog();
        let allowed = results
            .iter()
            .filter(|r| r.as_ref().is_ok_and(|c| c.decision.allowed))
            .count() as u64;
        let decided = results.iter().filter(|r| r.is_ok()).count() as u64;
        if let Some(m) = &self.metrics {
            m.decisions(allowed, decided - allowed);
        }
        let results = results
            .into_iter()
            .enumerate()
            .map(|(i, res)| match res {
                Ok(checked) => {
                    let result =
                        pb::BatchCheckResult {
                            allowed: checked.decision.allowed,
                            decision: convert::decision(checked.decision.allowed).into(),
                            missing_permissions: convert::missing(catalog, &checked),
                            denied_by_restriction: convert::restriction_denial(catalog, &checked),
                            explanation: checked.decision.explanation.as_ref().map(|e| {
                                convert::explanation(catalog, e, checked.resource.as_ref())
                            }),
                            error: None,
                        };
                    if let (Some(log), Some(input)) = (&self.decisions, items.get(i)) {
                        log.record(&Decision {
                            method: "BatchCheck",
                            role: role.name(),
                            tenant: &tenant,
                            user: &input.user_id,
                            target: input.target.as_ref(),
                            resource: input.resource.as_ref(),
                            context: &input.context,
                            allowed: result.allowed,
                            missing: &result.missing_permissions,
                            restricted_by: result
                                .denied_by_restriction
                                .as_ref()
                                .map(|d| d.resource_type.as_str()),
                            revision,
                            item: Some(i),
                        });
                    }
                    result
                }
                Err(e) => pb::BatchCheckResult {
                    allowed: false,
                    decision: pb::Decision::Unspecified.into(),
                    missing_permissions: Vec::new(),
                    denied_by_restriction: None,
                    explanation: None,
                    error: Some(pb::ItemError {
                        code: code(&e) as i32,
                        message: e.to_string(),
                    }),
                },
            })
            .collect();
        super::answer::respond(pb::BatchCheckResponse {
            results,
            revision: convert::revision(revision),
        })
    }

    async fn get_effective_permissions(
        &self,
        request: Request<pb::GetEffectivePermissionsRequest>,
    ) -> Result<Response<pb::GetEffectivePermissionsResponse>, Status> {
        let r = request.into_inner();
        crate::telemetry::tenant(&r.tenant_id);
        let tenant = TenantId::parse("tenant_id", r.tenant_id).map_err(to_status)?;
        let consistency = convert::consistency(r.consistency).map_err(to_status)?;
        let user = UserId::parse("user_id", r.user_id).map_err(to_status)?;
        let (view, revision) = (self.app)
            .effective(&tenant, &user, consistency)
            .await
            .map_err(to_status)?;
        let catalog = self.app.catalog();
        super::answer::respond(pb::GetEffectivePermissionsResponse {
            permissions: view
                .permissions
                .into_iter()
                .map(|e| pb::EffectivePermission {
                    key: catalog.key(e.permission).to_owned(),
                    sources: e.sources.iter().map(|s| s.render(catalog, None)).collect(),
                })
                .collect(),
            scoped_grants: view
                .scoped
                .into_iter()
                .map(|(g, source)| pb::EffectiveScopedGrant {
                    permission: catalog.key(g.permission).to_owned(),
                    resource: Some(convert::resource_out(catalog, &g.resource)),
                    source: source.render(catalog, None),
                })
                .collect(),
            restrictions: view
                .restrictions
                .iter()
                .map(|x| convert::restriction_out(catalog, x))
                .collect(),
            group_keys: view.groups,
            user_status: convert::user_state(view.state).to_owned(),
            roles: view.roles,
            revision: convert::revision(revision),
        })
    }

    async fn list_allowed_resources(
        &self,
        request: Request<pb::ListAllowedResourcesRequest>,
    ) -> Result<Response<pb::ListAllowedResourcesResponse>, Status> {
        let r = request.into_inner();
        crate::telemetry::tenant(&r.tenant_id);
        let tenant = TenantId::parse("tenant_id", r.tenant_id).map_err(to_status)?;
        let consistency = convert::consistency(r.consistency).map_err(to_status)?;
        let (allowed, revision) = self
            .app
            .allowed_resources(
                &tenant,
                &UserId::parse("user_id", r.user_id).map_err(to_status)?,
                &r.permission,
                &r.resource_type,
                consistency,
            )
            .await
            .map_err(to_status)?;
        super::answer::respond(pb::ListAllowedResourcesResponse {
            all: allowed.all,
            resource_ids: allowed.ids,
            revision: convert::revision(revision),
        })
    }
}
