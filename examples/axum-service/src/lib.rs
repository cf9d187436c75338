//! An HTTP service that asks authz before it answers.
//!
//! Who is calling comes from the `x-tenant` and `x-user` headers here (in a real service: from
//! the verified session or token). Each handler states what it needs; [`require`] asks authz and
//! turns a denial into `403 Forbidden` with the permissions that are missing, and an authz error
//! into `503` — never into an allow.

use authz_client::Client;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

/// The service's state: one authz client, shared by every request.
#[derive(Clone)]
pub struct App {
    pub authz: Client,
}

/// Builds the routes.
pub fn router(authz: Client) -> Router {
    Router::new()
        .route("/reports", get(reports))
        .route("/customers/export", get(export_customers))
        .route("/folders/{folder}/reports", get(folder_reports))
        .with_state(App { authz })
}

/// The caller, from the request's headers.
pub struct Caller {
    pub tenant: String,
    pub user: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        match (header("x-tenant"), header("x-user")) {
            (Some(tenant), Some(user)) => Ok(Caller { tenant, user }),
            _ => Err((
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "send x-tenant and x-user"})),
            )
                .into_response()),
        }
    }
}

/// Why a request was refused.
pub enum Refused {
    /// authz denied it.
    Forbidden {
        missing: Vec<String>,
        reason: String,
    },
    /// authz could not answer: refuse, never allow.
    Unavailable(authz_client::Error),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Forbidden { missing, reason } => (
                StatusCode::FORBIDDEN,
                Json(
                    json!({"error": "forbidden", "missing_permissions": missing, "reason": reason}),
                ),
            )
                .into_response(),
            Refused::Unavailable(e) => (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "authorization unavailable", "detail": e.to_string()})),
            )
                .into_response(),
        }
    }
}

/// Awaits a check; a denial or an error refuses the request.
pub async fn require(check: authz_client::CheckRequest<'_>) -> Result<(), Refused> {
    match check.await {
        Ok(d) if d.allowed => Ok(()),
        Ok(d) => Err(Refused::Forbidden {
            reason: match &d.denied_by_restriction {
                Some(r) => format!("limited to other {}s", r.resource_type),
                None => "missing permissions".to_owned(),
            },
            missing: d.missing_permissions,
        }),
        Err(e) => Err(Refused::Unavailable(e)),
    }
}

async fn reports(
    State(app): State<App>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, Refused> {
    require(
        app.authz
            .check(&caller.tenant, &caller.user)
            .permission("view_reports"),
    )
    .await?;
    Ok(Json(json!({"reports": ["weekly", "monthly"]})))
}

#[derive(Deserialize)]
struct ExportQuery {
    #[serde(default)]
    personal_data: bool,
}

/// A catalog action with a context flag: exporting personal data needs more.
async fn export_customers(
    State(app): State<App>,
    caller: Caller,
    Query(q): Query<ExportQuery>,
) -> Result<Json<serde_json::Value>, Refused> {
    require(
        app.authz
            .check(&caller.tenant, &caller.user)
            .action("customers.export_customers")
            .context("include_personal_data", q.personal_data),
    )
    .await?;
    Ok(Json(
        json!({"export": "started", "personal_data": q.personal_data}),
    ))
}

/// A check on a resource: restrictions to folders apply.
async fn folder_reports(
    State(app): State<App>,
    caller: Caller,
    axum::extract::Path(folder): axum::extract::Path<String>,
) -> Result<Json<serde_json::Value>, Refused> {
    require(
        app.authz
            .check(&caller.tenant, &caller.user)
            .permission("view_reports")
            .resource("folder", &folder),
    )
    .await?;
    Ok(Json(json!({"folder": folder, "reports": ["weekly"]})))
}
