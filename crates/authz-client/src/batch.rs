//! BatchCheck: many checks of one tenant, split into requests the server accepts.

use crate::Error;
use crate::check::BoxFuture;
use crate::client::{Client, Kind};
use crate::proto::{self, authz_service_client::AuthzServiceClient};
use crate::types::{Consistency, Decision, ItemError, Revision, decided, revision_in};
use futures_util::{StreamExt, TryStreamExt};
use std::future::IntoFuture;
use std::time::Duration;

/// One check of a batch: a user and what to check, like [`Client::check`].
///
/// ```
/// use authz_client::BatchItem;
/// let item = BatchItem::permission("alice", "view_reports").resource("folder", "f1");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct BatchItem(proto::BatchCheckItem);

impl BatchItem {
    fn new(user: impl Into<String>, target: proto::batch_check_item::Target) -> BatchItem {
        BatchItem(proto::BatchCheckItem {
            user_id: user.into(),
            target: Some(target),
            ..Default::default()
        })
    }

    /// Whether `user` holds a permission key (or alias).
    pub fn permission(user: impl Into<String>, key: impl Into<String>) -> BatchItem {
        BatchItem::new(
            user,
            proto::batch_check_item::Target::Permission(key.into()),
        )
    }

    /// Whether `user` may do a catalog action.
    pub fn action(user: impl Into<String>, key: impl Into<String>) -> BatchItem {
        BatchItem::new(user, proto::batch_check_item::Target::Action(key.into()))
    }

    /// Whether `user` meets an inline requirement.
    pub fn expression(user: impl Into<String>, expression: impl Into<String>) -> BatchItem {
        BatchItem::new(
            user,
            proto::batch_check_item::Target::Expression(expression.into()),
        )
    }

    /// On a resource.
    pub fn resource(mut self, resource_type: impl Into<String>, id: impl Into<String>) -> Self {
        self.0.resource = Some(proto::Resource {
            r#type: resource_type.into(),
            id: id.into(),
        });
        self
    }

    /// With a context flag.
    pub fn context(mut self, flag: impl Into<String>, value: bool) -> Self {
        self.0.context.insert(flag.into(), value);
        self
    }

    /// With an explanation.
    pub fn explain(mut self) -> Self {
        self.0.explain = true;
        self
    }

    /// The message sent for this item.
    pub fn into_proto(self) -> proto::BatchCheckItem {
        self.0
    }
}

impl From<proto::BatchCheckItem> for BatchItem {
    fn from(item: proto::BatchCheckItem) -> Self {
        BatchItem(item)
    }
}

/// Many checks of one tenant: [`Client::batch_check`].
#[must_use = "a batch does nothing until it is awaited"]
pub struct BatchCheckRequest<'c> {
    client: &'c Client,
    tenant: String,
    items: Vec<proto::BatchCheckItem>,
    consistency: Option<Consistency>,
    timeout: Option<Duration>,
}

/// The answers to a batch, in the order of its items.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchDecisions {
    /// One per item: its decision, or why it could not be decided (the others are answered
    /// all the same).
    pub results: Vec<Result<Decision, ItemError>>,
    /// The oldest revision any item was decided at.
    pub revision: Revision,
}

impl BatchDecisions {
    /// Whether every item was decided and allowed.
    pub fn all_allowed(&self) -> bool {
        self.results
            .iter()
            .all(|r| r.as_ref().is_ok_and(|d| d.allowed))
    }
}

impl Client {
    /// Starts a batch of checks of `tenant`; add items, then `.await` it. A batch larger than
    /// [`ClientBuilder::max_batch`](crate::ClientBuilder::max_batch) is sent as several
    /// requests, concurrently, and answered as one.
    ///
    /// ```no_run
    /// # async fn f(client: authz_client::Client) -> Result<(), authz_client::Error> {
    /// use authz_client::BatchItem;
    /// let answers = client
    ///     .batch_check("acme")
    ///     .item(BatchItem::permission("alice", "view_reports"))
    ///     .item(BatchItem::action("bob", "flows.add_a_flow").context("multibrand", false))
    ///     .await?;
    /// for result in &answers.results {
    ///     match result {
    ///         Ok(d) => println!("allowed: {}", d.allowed),
    ///         Err(e) => println!("bad item: {e}"),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn batch_check(&self, tenant: impl Into<String>) -> BatchCheckRequest<'_> {
        BatchCheckRequest {
            client: self,
            tenant: tenant.into(),
            items: Vec::new(),
            consistency: None,
            timeout: None,
        }
    }
}

impl BatchCheckRequest<'_> {
    /// Adds an item.
    pub fn item(mut self, item: impl Into<BatchItem>) -> Self {
        self.items.push(item.into().0);
        self
    }

    /// Adds items.
    pub fn items<I>(mut self, items: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<BatchItem>,
    {
        self.items.extend(items.into_iter().map(|i| i.into().0));
        self
    }

    /// How fresh the data must be, for every item.
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = Some(consistency);
        self
    }

    /// The deadline of each request of the batch, retries included.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends the batch.
    pub async fn send(self) -> Result<BatchDecisions, Error> {
        let client = self.client;
        let consistency = client.consistency(&self.tenant, self.consistency);
        let size = client.inner.max_batch;
        let requests: Vec<proto::BatchCheckRequest> = if self.items.is_empty() {
            // The server says what is wrong with an empty batch.
            vec![proto::BatchCheckRequest {
                tenant_id: self.tenant.clone(),
                items: Vec::new(),
                consistency,
            }]
        } else {
            self.items
                .chunks(size)
                .map(|chunk| proto::BatchCheckRequest {
                    tenant_id: self.tenant.clone(),
                    items: chunk.to_vec(),
                    consistency: consistency.clone(),
                })
                .collect()
        };
        let timeout = self.timeout;
        let answers: Vec<proto::BatchCheckResponse> = futures_util::stream::iter(requests)
            .map(|request| async move {
                let r = client
                    .call(
                        "/authz.v1.AuthzService/BatchCheck",
                        &request.tenant_id,
                        Kind::Check,
                        timeout,
                        |channel, meta| {
                            let req = meta.request(request.clone());
                            async move { AuthzServiceClient::new(channel).batch_check(req).await }
                        },
                    )
                    .await?;
                Ok::<_, Error>(r.into_inner())
            })
            .buffered(client.inner.batch_concurrency)
            .try_collect()
            .await?;
        let mut results = Vec::with_capacity(self.items.len());
        let mut oldest: Option<Revision> = None;
        for answer in answers {
            let revision = revision_in(&answer.revision)?;
            oldest = Some(oldest.map_or(revision, |o| o.min(revision)));
            for r in answer.results {
                results.push(item_result(r, revision)?);
            }
        }
        if results.len() != self.items.len() {
            return Err(Error::Status(tonic::Status::internal(format!(
                "the server answered {} of {} batch items",
                results.len(),
                self.items.len()
            ))));
        }
        Ok(BatchDecisions {
            results,
            revision: oldest.unwrap_or(Revision(0)),
        })
    }
}

fn item_result(
    r: proto::BatchCheckResult,
    revision: Revision,
) -> Result<Result<Decision, ItemError>, Error> {
    if let Some(e) = r.error {
        return Ok(Err(ItemError {
            code: tonic::Code::from_i32(e.code),
            message: e.message,
        }));
    }
    Ok(Ok(Decision {
        allowed: decided(r.decision, r.allowed)?,
        missing_permissions: r.missing_permissions,
        denied_by_restriction: r.denied_by_restriction,
        explanation: r.explanation,
        revision,
    }))
}

impl<'c> IntoFuture for BatchCheckRequest<'c> {
    type Output = Result<BatchDecisions, Error>;
    type IntoFuture = BoxFuture<'c, Result<BatchDecisions, Error>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}
