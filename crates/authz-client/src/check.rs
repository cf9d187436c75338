//! Check, GetEffectivePermissions and ListAllowedResources as typed requests.

use crate::Error;
use crate::client::{Client, Kind};
use crate::proto::{self, authz_service_client::AuthzServiceClient};
use crate::types::{Consistency, Decision, Revision, revision_in};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

/// A boxed future, as every request builder's `.await` returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One check, built up then awaited: [`Client::check`].
///
/// Name exactly one target: [`permission`](Self::permission), [`action`](Self::action) or
/// [`expression`](Self::expression) (the server refuses a check without one, with
/// `INVALID_ARGUMENT`).
#[must_use = "a check does nothing until it is awaited"]
pub struct CheckRequest<'c> {
    client: &'c Client,
    request: proto::CheckRequest,
    consistency: Option<Consistency>,
    timeout: Option<Duration>,
}

impl Client {
    /// Starts a check of `user` in `tenant`; name what to check, then `.await` it.
    ///
    /// ```no_run
    /// # async fn f(client: authz_client::Client) -> Result<(), authz_client::Error> {
    /// let decision = client
    ///     .check("acme", "alice")
    ///     .action("customers.export_customers")
    ///     .context("include_personal_data", true)
    ///     .explain()
    ///     .await?;
    /// println!("{}", decision.explanation.map(|e| e.summary).unwrap_or_default());
    /// # Ok(()) }
    /// ```
    pub fn check(&self, tenant: impl Into<String>, user: impl Into<String>) -> CheckRequest<'_> {
        CheckRequest {
            client: self,
            request: proto::CheckRequest {
                tenant_id: tenant.into(),
                user_id: user.into(),
                ..Default::default()
            },
            consistency: None,
            timeout: None,
        }
    }
}

impl CheckRequest<'_> {
    /// Check a permission key (or alias), e.g. `export_customers`.
    pub fn permission(mut self, key: impl Into<String>) -> Self {
        self.request.target = Some(proto::check_request::Target::Permission(key.into()));
        self
    }

    /// Check a catalog action, e.g. `customers.export_customers`.
    pub fn action(mut self, key: impl Into<String>) -> Self {
        self.request.target = Some(proto::check_request::Target::Action(key.into()));
        self
    }

    /// Check an inline requirement, e.g. `edit_flows & (!ctx.multibrand | view_brands)`.
    pub fn expression(mut self, expression: impl Into<String>) -> Self {
        self.request.target = Some(proto::check_request::Target::Expression(expression.into()));
        self
    }

    /// Check on a resource: scoped grants on it count, and restrictions of its type apply.
    pub fn resource(mut self, resource_type: impl Into<String>, id: impl Into<String>) -> Self {
        self.request.resource = Some(proto::Resource {
            r#type: resource_type.into(),
            id: id.into(),
        });
        self
    }

    /// Sets a context flag the requirement tests (`ctx.NAME`). Send every flag it tests, true
    /// or false: a missing one is `INVALID_ARGUMENT`, never a silent false.
    pub fn context(mut self, flag: impl Into<String>, value: bool) -> Self {
        self.request.context.insert(flag.into(), value);
        self
    }

    /// Asks for an explanation in RBAC terms ([`Decision::explanation`]).
    pub fn explain(mut self) -> Self {
        self.request.explain = true;
        self
    }

    /// How fresh the data must be (see [`Consistency`]; unset: read-your-writes or the cache).
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = Some(consistency);
        self
    }

    /// This call's deadline, retries included, instead of the client's.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends the check.
    pub async fn send(mut self) -> Result<Decision, Error> {
        let client = self.client;
        self.request.consistency = client.consistency(&self.request.tenant_id, self.consistency);
        let request = self.request;
        let response = client
            .call(
                "/authz.v1.AuthzService/Check",
                &request.tenant_id,
                Kind::Check,
                self.timeout,
                |channel, meta| {
                    let req = meta.request(request.clone());
                    async move { AuthzServiceClient::new(channel).check(req).await }
                },
            )
            .await?;
        Decision::from_check(response.into_inner())
    }
}

impl<'c> IntoFuture for CheckRequest<'c> {
    type Output = Result<Decision, Error>;
    type IntoFuture = BoxFuture<'c, Result<Decision, Error>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// A user's effective permissions: [`Client::effective_permissions`].
#[must_use = "a request does nothing until it is awaited"]
pub struct EffectivePermissionsRequest<'c> {
    client: &'c Client,
    request: proto::GetEffectivePermissionsRequest,
    consistency: Option<Consistency>,
    timeout: Option<Duration>,
}

/// A user's effective permissions (with where each comes from), scoped grants, limits, groups
/// and roles, as the server read them at [`revision`](Self::revision).
#[derive(Clone, Debug, PartialEq)]
pub struct EffectivePermissions {
    /// Everything the server answered.
    pub response: proto::GetEffectivePermissionsResponse,
    /// The revision it was read at.
    pub revision: Revision,
}

impl EffectivePermissions {
    /// Whether the user holds a permission unscoped (by key, as the server lists them).
    pub fn holds(&self, key: &str) -> bool {
        self.response.permissions.iter().any(|p| p.key == key)
    }
}

impl Client {
    /// What `user` of `tenant` holds and where each permission comes from.
    ///
    /// ```no_run
    /// # async fn f(client: authz_client::Client) -> Result<(), authz_client::Error> {
    /// let effective = client.effective_permissions("acme", "alice").await?;
    /// for p in &effective.response.permissions {
    ///     println!("{} from {}", p.key, p.sources.join(", "));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn effective_permissions(
        &self,
        tenant: impl Into<String>,
        user: impl Into<String>,
    ) -> EffectivePermissionsRequest<'_> {
        EffectivePermissionsRequest {
            client: self,
            request: proto::GetEffectivePermissionsRequest {
                tenant_id: tenant.into(),
                user_id: user.into(),
                consistency: None,
            },
            consistency: None,
            timeout: None,
        }
    }
}

impl EffectivePermissionsRequest<'_> {
    /// How fresh the data must be.
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = Some(consistency);
        self
    }

    /// This call's deadline, retries included.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends the request.
    pub async fn send(mut self) -> Result<EffectivePermissions, Error> {
        let client = self.client;
        self.request.consistency = client.consistency(&self.request.tenant_id, self.consistency);
        let request = self.request;
        let response = client
            .call(
                "/authz.v1.AuthzService/GetEffectivePermissions",
                &request.tenant_id,
                Kind::Check,
                self.timeout,
                |channel, meta| {
                    let req = meta.request(request.clone());
                    async move {
                        AuthzServiceClient::new(channel)
                            .get_effective_permissions(req)
                            .await
                    }
                },
            )
            .await?
            .into_inner();
        Ok(EffectivePermissions {
            revision: revision_in(&response.revision)?,
            response,
        })
    }
}

impl<'c> IntoFuture for EffectivePermissionsRequest<'c> {
    type Output = Result<EffectivePermissions, Error>;
    type IntoFuture = BoxFuture<'c, Result<EffectivePermissions, Error>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// Which resources of a type a user may use a permission on: [`Client::allowed_resources`].
#[must_use = "a request does nothing until it is awaited"]
pub struct AllowedResourcesRequest<'c> {
    client: &'c Client,
    request: proto::ListAllowedResourcesRequest,
    consistency: Option<Consistency>,
    timeout: Option<Duration>,
}

/// The resources a user may use a permission on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowedResources {
    /// Every resource of the type.
    All,
    /// Only these, sorted.
    Only(Vec<String>),
}

impl Client {
    /// The resources of `resource_type` that `user` may use `permission` on.
    ///
    /// ```no_run
    /// # async fn f(client: authz_client::Client) -> Result<(), authz_client::Error> {
    /// use authz_client::AllowedResources;
    /// match client.allowed_resources("acme", "alice", "view_reports", "folder").await?.0 {
    ///     AllowedResources::All => println!("every folder"),
    ///     AllowedResources::Only(ids) => println!("folders {ids:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn allowed_resources(
        &self,
        tenant: impl Into<String>,
        user: impl Into<String>,
        permission: impl Into<String>,
        resource_type: impl Into<String>,
    ) -> AllowedResourcesRequest<'_> {
        AllowedResourcesRequest {
            client: self,
            request: proto::ListAllowedResourcesRequest {
                tenant_id: tenant.into(),
                user_id: user.into(),
                permission: permission.into(),
                resource_type: resource_type.into(),
                consistency: None,
            },
            consistency: None,
            timeout: None,
        }
    }
}

impl AllowedResourcesRequest<'_> {
    /// How fresh the data must be.
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = Some(consistency);
        self
    }

    /// This call's deadline, retries included.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends the request; answers the resources and the revision they were read at.
    pub async fn send(mut self) -> Result<(AllowedResources, Revision), Error> {
        let client = self.client;
        self.request.consistency = client.consistency(&self.request.tenant_id, self.consistency);
        let request = self.request;
        let r = client
            .call(
                "/authz.v1.AuthzService/ListAllowedResources",
                &request.tenant_id,
                Kind::Check,
                self.timeout,
                |channel, meta| {
                    let req = meta.request(request.clone());
                    async move {
                        AuthzServiceClient::new(channel)
                            .list_allowed_resources(req)
                            .await
                    }
                },
            )
            .await?
            .into_inner();
        let allowed = if r.all {
            AllowedResources::All
        } else {
            AllowedResources::Only(r.resource_ids)
        };
        Ok((allowed, revision_in(&r.revision)?))
    }
}

impl<'c> IntoFuture for AllowedResourcesRequest<'c> {
    type Output = Result<(AllowedResources, Revision), Error>;
    type IntoFuture = BoxFuture<'c, Result<(AllowedResources, Revision), Error>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}
