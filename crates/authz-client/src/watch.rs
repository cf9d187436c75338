//! Watch: a tenant's change stream that resumes by itself from the last revision it delivered.

use crate::Error;
use crate::client::Client;
use crate::proto::{self, authz_service_client::AuthzServiceClient};
use crate::types::{Revision, revision_in};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;
use tokio::sync::mpsc;
use tokio_stream::Stream;

/// The Watch response's initial metadata: the revision the stream starts after.
const AFTER_REVISION: &str = "authz-after-revision";

/// One committed change of a tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The revision it committed at.
    pub revision: Revision,
    /// When it committed.
    pub commit_time: Option<SystemTime>,
    /// The admin operation: `add_members`, `update_group`, `grant`, ...
    pub operation: String,
    /// Users whose own grants, memberships or status changed.
    pub user_ids: Vec<String>,
    /// Custom groups whose grants changed (their members' permissions changed too).
    pub group_keys: Vec<String>,
    /// Too many users to list: every user of the tenant may have changed.
    pub all_users: bool,
}

impl Change {
    fn from_proto(r: proto::WatchResponse) -> Result<Change, Error> {
        Ok(Change {
            revision: revision_in(&r.revision)?,
            commit_time: r.commit_time.and_then(|t| SystemTime::try_from(t).ok()),
            operation: r.operation,
            user_ids: r.user_ids,
            group_keys: r.group_keys,
            all_users: r.all_users,
        })
    }
}

/// Opens a change stream: [`Client::watch`].
#[must_use = "a watch does nothing until it is started"]
pub struct WatchRequest<'c> {
    client: &'c Client,
    tenant: String,
    after: Option<Revision>,
}

impl Client {
    /// Follows `tenant`'s committed changes. The stream resumes by itself when its replica
    /// goes away (a restart, a shutdown, a network cut): it reconnects, to the tenant's next
    /// ready replica if there are several, with backoff, from the last revision it delivered,
    /// so no change is lost or repeated. It ends with an error only for one that reconnecting
    /// cannot cure (an unknown tenant, a refused key, a stream cap: `RESOURCE_EXHAUSTED`).
    ///
    /// ```no_run
    /// # async fn f(client: authz_client::Client) -> Result<(), authz_client::Error> {
    /// use tokio_stream::StreamExt;
    /// let mut changes = client.watch("acme").start().await?;
    /// while let Some(change) = changes.next().await {
    ///     let change = change?;
    ///     println!("{} {} {:?}", change.revision, change.operation, change.user_ids);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn watch(&self, tenant: impl Into<String>) -> WatchRequest<'_> {
        WatchRequest {
            client: self,
            tenant: tenant.into(),
            after: None,
        }
    }
}

impl WatchRequest<'_> {
    /// Start after this revision (replaying the changes since); unset: from now on.
    pub fn after(mut self, revision: Revision) -> Self {
        self.after = Some(revision);
        self
    }

    /// Opens the stream. Errors that reconnecting cannot cure are returned here.
    pub async fn start(self) -> Result<Changes, Error> {
        let client = self.client.clone();
        let (stream, after) = open(&client, &self.tenant, self.after).await?;
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(follow(client, self.tenant, stream, after, tx));
        Ok(Changes {
            rx,
            task: task.abort_handle(),
        })
    }
}

/// A tenant's changes, in revision order; see [`Client::watch`]. Dropping it closes the stream.
#[derive(Debug)]
pub struct Changes {
    rx: mpsc::Receiver<Result<Change, Error>>,
    task: tokio::task::AbortHandle,
}

impl Stream for Changes {
    type Item = Result<Change, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Changes {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Streaming = tonic::Streaming<proto::WatchResponse>;

/// Opens a Watch on the tenant's replica, retrying UNAVAILABLE as reads are. The client's
/// deadline bounds the opening only: the server is sent none, since a stream lives on. Returns the stream and the revision it starts after, when known.
async fn open(
    client: &Client,
    tenant: &str,
    after: Option<Revision>,
) -> Result<(Streaming, Option<Revision>), Error> {
    let request = proto::WatchRequest {
        tenant_id: tenant.to_owned(),
        after_revision: after.map(Revision::token).unwrap_or_default(),
    };
    let response = client
        .call(
            "/authz.v1.AuthzService/Watch",
            tenant,
            crate::client::Kind::Stream,
            None,
            |channel, meta| {
                let mut req = tonic::Request::new(request.clone());
                // The key, but no grpc-timeout: a stream has no deadline.
                *req.metadata_mut() = meta.request(()).metadata().clone();
                req.metadata_mut().remove("grpc-timeout");
                async move { AuthzServiceClient::new(channel).watch(req).await }
            },
        )
        .await?;
    let start = response
        .metadata()
        .get(AFTER_REVISION)
        .and_then(|v| v.to_str().ok())
        .and_then(Revision::parse)
        .or(after);
    Ok((response.into_inner(), start))
}

/// Forwards changes; when the stream breaks with UNAVAILABLE (or ends), reopens it after the
/// last delivered revision with backoff, forever; any other error is delivered and ends it.
async fn follow(
    client: Client,
    tenant: String,
    mut stream: Streaming,
    mut after: Option<Revision>,
    tx: mpsc::Sender<Result<Change, Error>>,
) {
    let mut failures = 0u32;
    loop {
        let message = tokio::select! {
            m = stream.message() => m,
            () = tx.closed() => return,
        };
        let broken = match message {
            Ok(Some(m)) => {
                failures = 0;
                match Change::from_proto(m) {
                    Ok(change) => {
                        after = Some(change.revision);
                        if tx.send(Ok(change)).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
            Ok(None) => tonic::Status::unavailable("the stream ended"),
            Err(s) if s.code() == tonic::Code::Unavailable => s,
            Err(s) => {
                let _ = tx.send(Err(s.into())).await;
                return;
            }
        };
        // Reconnect, from the last revision delivered.
        loop {
            failures += 1;
            tracing::debug!(tenant, after = ?after, error = %broken.message(), "watch stream broke; resuming");
            let pause = client.inner.retry.backoff(failures.min(16));
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = tx.closed() => return,
            }
            match open(&client, &tenant, after).await {
                Ok((s, start)) => {
                    stream = s;
                    after = after.or(start);
                    break;
                }
                Err(e) if e.code() == tonic::Code::Unavailable => continue,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    }
}
