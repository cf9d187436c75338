//! `authz.v1.AuthzService`: validate → convert → call the application → convert back.

use super::convert;
use super::pb::{self, authz_service_server::AuthzService};
use super::status::{code, to_status};
use crate::app::{Authz, CheckInput, TargetInput};
use authz_core::decide;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct AuthzApi {
    app: Arc<Authz>,
}

impl AuthzApi {
    pub fn new(app: Arc<Authz>) -> Self {
        Self { app }
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
    async fn check(
        &self,
        request: Request<pb::CheckRequest>,
    ) -> Result<Response<pb::CheckResponse>, Status> {
        let r = request.into_inner();
        let consistency = convert::consistency(r.consistency).map_err(to_status)?;
        let input = CheckInput {
            user_id: r.user_id,
            target: check_target(r.target),
            resource: convert::resource_in(r.resource),
            context: r.context.into_iter().collect(),
            explain: r.explain,
        };
        let (checked, revision) = self
            .app
            .check(&r.tenant_id, &input, consistency)
            .await
            .map_err(to_status)?;
        let catalog = self.app.catalog();
        Ok(Response::new(pb::CheckResponse {
            allowed: checked.decision.allowed,
            missing_permissions: convert::missing(catalog, &checked),
            revision: convert::revision(revision),
            explanation: checked
                .decision
                .explanation
                .as_ref()
                .map(|e| convert::explanation(catalog, e, checked.resource.as_ref())),
        }))
    }

    async fn batch_check(
        &self,
        request: Request<pb::BatchCheckRequest>,
    ) -> Result<Response<pb::BatchCheckResponse>, Status> {
        let r = request.into_inner();
        let consistency = convert::consistency(r.consistency).map_err(to_status)?;
        let items: Vec<CheckInput> = r
            .items
            .into_iter()
            .map(|i| CheckInput {
                user_id: i.user_id,
                target: item_target(i.target),
                resource: convert::resource_in(i.resource),
                context: i.context.into_iter().collect(),
                explain: false,
            })
            .collect();
        let (results, revision) = self
            .app
            .batch_check(&r.tenant_id, &items, consistency)
            .await
            .map_err(to_status)?;
        let catalog = self.app.catalog();
        let results = results
            .into_iter()
            .map(|res| match res {
                Ok(checked) => pb::BatchCheckResult {
                    allowed: checked.decision.allowed,
                    missing_permissions: convert::missing(catalog, &checked),
                    error: None,
                },
                Err(e) => pb::BatchCheckResult {
                    allowed: false,
                    missing_permissions: Vec::new(),
                    error: Some(pb::ItemError {
                        code: code(&e) as i32,
                        message: e.to_string(),
                    }),
                },
            })
            .collect();
        Ok(Response::new(pb::BatchCheckResponse {
            results,
            revision: convert::revision(revision),
        }))
    }

    async fn get_effective_permissions(
        &self,
        request: Request<pb::GetEffectivePermissionsRequest>,
    ) -> Result<Response<pb::GetEffectivePermissionsResponse>, Status> {
        let r = request.into_inner();
        let consistency = convert::consistency(r.consistency).map_err(to_status)?;
        let (subject, revision) = self
            .app
            .subject(&r.tenant_id, &r.user_id, consistency)
            .await
            .map_err(to_status)?;
        let catalog = self.app.catalog();
        let state = match &subject.user {
            None => decide::UserState::Unknown,
            Some(_) if !subject.is_active() => decide::UserState::Blocked,
            Some(_) => decide::UserState::Active,
        };
        let user = subject.user.as_deref();
        Ok(Response::new(pb::GetEffectivePermissionsResponse {
            permissions: decide::effective_permissions(&subject)
                .into_iter()
                .map(|e| pb::EffectivePermission {
                    key: catalog.key(e.permission).to_owned(),
                    sources: e.sources.iter().map(|s| s.render(catalog, None)).collect(),
                })
                .collect(),
            scoped_grants: decide::scoped_grants(&subject)
                .into_iter()
                .map(|(g, source)| pb::EffectiveScopedGrant {
                    permission: catalog.key(g.permission).to_owned(),
                    resource: Some(convert::resource_out(catalog, &g.resource)),
                    source: source.render(catalog, None),
                })
                .collect(),
            restrictions: user
                .map(|u| {
                    u.restrictions
                        .iter()
                        .map(|x| convert::restriction_out(catalog, x))
                        .collect()
                })
                .unwrap_or_default(),
            group_keys: user.map(|u| u.groups.clone()).unwrap_or_default(),
            user_status: convert::user_state(state).to_owned(),
            revision: convert::revision(revision),
        }))
    }

    async fn list_allowed_resources(
        &self,
        request: Request<pb::ListAllowedResourcesRequest>,
    ) -> Result<Response<pb::ListAllowedResourcesResponse>, Status> {
        let r = request.into_inner();
        let consistency = convert::consistency(r.consistency).map_err(to_status)?;
        let (allowed, revision) = self
            .app
            .allowed_resources(
                &r.tenant_id,
                &r.user_id,
                &r.permission,
                &r.resource_type,
                consistency,
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListAllowedResourcesResponse {
            all: allowed.all,
            resource_ids: allowed.ids,
            revision: convert::revision(revision),
        }))
    }
}
