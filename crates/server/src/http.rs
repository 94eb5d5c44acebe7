//! The HTTP API: the router, its middleware stack, the operational routes (`/health`,
//! `/ready`, `/metrics`, `/openapi.json`, `/docs`) and the API's modules (`/api/v1/jobs` in
//! [`jobs`]).
//!
//! Handlers only read the store and (from the queue issue on) enqueue jobs; they never run an
//! agent. Every error answer is JSON `{error, message, request_id}` (see [`middleware`]).

pub mod auth;
pub mod deliveries;
pub mod error;
pub mod jobs;
pub mod middleware;
pub mod page;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kodiai_protocol::{ErrorBody, HealthResponse, JobKind, JobState, ReadyResponse};
use kodiai_store::Store;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::ingress::{DeliveryWriter, Ingress};
use crate::telemetry::{VERSION, render_metrics};
pub use auth::AdminAuth;
pub use error::{ApiError, ApiJson};
use kodiai_runtime::config::Config;
use kodiai_runtime::jobs::Clock;
pub use middleware::RequestId;

/// How long `/ready` waits for the database before calling it unreachable.
const READY_DB_TIMEOUT: Duration = Duration::from_secs(5);

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    /// The time source of the queue (the system clock; tests may use tokio's paused clock).
    pub clock: Clock,
    /// Cancelled when the server starts shutting down: long-lived responses (event streams)
    /// end on it, so that the graceful shutdown does not wait for them.
    pub shutdown: CancellationToken,
    /// Job workers running in this process.
    pub workers: u32,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "kodiai",
        description = "A self-hosted AI software engineer for GitHub: pull-request reviews, \
                       @kodiai mentions, agent sessions, tickets and a fleet view, over one HTTP API."
    ),
    // JobKind is named only by a query parameter's `value_type`, which utoipa does not collect.
    components(schemas(ErrorBody, JobKind)),
    modifiers(&SecurityAddon),
    tags(
        (name = "operations", description = "Health, readiness, metrics"),
        (name = "jobs", description = "The job queue: every piece of work, its state and event \
                                       log; cancel and retry (admin token)"),
        (name = "webhooks", description = "GitHub webhook deliveries, signed with the webhook secret"),
        (name = "deliveries", description = "What came in from GitHub and what became of it; \
                                             replay (admin token)")
    )
)]
struct ApiDoc;

/// Declares the security schemes that routes name in `security(...)`.
struct SecurityAddon;

impl Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut admin = Http::new(HttpAuthScheme::Bearer);
        admin.description = Some("The admin token: `KODIAI_ADMIN_TOKEN`".to_owned());
        components.add_security_scheme("admin_token", SecurityScheme::Http(admin));
    }
}

/// The whole application: operational routes, `extra` routes (tests add their own; later
/// issues add theirs here), and the middleware stack around all of them.
pub fn router(state: AppState, extra: Router<AppState>) -> Router {
    let config = Arc::clone(&state.config);
    let ingress = Arc::new(Ingress::from_config(&config));
    let writer = Arc::new(DeliveryWriter::new(
        Arc::clone(&ingress),
        state.store.clone(),
    ));
    let (routes, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics))
        .routes(routes!(repo_config_schema))
        .merge(jobs::routes())
        .merge(deliveries::routes())
        .split_for_parts();
    // The webhook route has GitHub's 25 MiB limit instead of the API's.
    let (hooks, hooks_openapi) = webhooks::routes().split_for_parts();
    openapi.merge(hooks_openapi);

    let limit = config.server.body_limit_bytes;
    let api = routes
        .merge(extra)
        .layer(DefaultBodyLimit::max(limit))
        .layer(RequestBodyLimitLayer::new(limit));
    let hooks = hooks
        .layer(DefaultBodyLimit::max(webhooks::BODY_LIMIT))
        .layer(RequestBodyLimitLayer::new(webhooks::BODY_LIMIT));
    let mut app = api
        .merge(hooks)
        .layer(axum::Extension(ingress))
        .layer(axum::Extension(writer))
        .fallback(not_found)
        .with_state(state)
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi));
    if let Some(cors) = cors_layer(&config.server.cors_allowed_origins) {
        app = app.layer(cors);
    }
    app.layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn_with_state(
            middleware::ContextConfig {
                request_timeout: config.server.request_timeout(),
            },
            middleware::request_context,
        ))
}

/// `GET /health`: the process is up.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "The process is up", body = HealthResponse)))]
async fn health() -> axum::Json<HealthResponse> {
    axum::Json(HealthResponse {
        status: "ok".into(),
        version: VERSION.into(),
    })
}

/// `GET /ready`: the database answers and every migration is applied.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready to serve", body = ReadyResponse),
        (status = 503, description = "Not ready; the message says why", body = ErrorBody)))]
async fn ready(State(state): State<AppState>) -> Result<axum::Json<ReadyResponse>, ApiError> {
    let migrations = match tokio::time::timeout(READY_DB_TIMEOUT, state.store.check_ready()).await {
        Ok(Ok(migrations)) => migrations,
        Ok(Err(e)) => return Err(ApiError::not_ready(e.to_string())),
        Err(_) => {
            return Err(ApiError::not_ready(format!(
                "database unreachable: no answer within {} s",
                READY_DB_TIMEOUT.as_secs()
            )));
        }
    };
    Ok(axum::Json(ReadyResponse {
        status: "ready".into(),
        database: state.store.backend().as_str().into(),
        migrations,
        workers: state.workers,
    }))
}

/// `GET /metrics`: Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = render_metrics();
    text.push_str(&job_gauges(&state.store).await);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// `jobs_queue_depth{kind,state}`, counted in the database at scrape time, so that every process
/// on one database reports the same numbers. Written here rather than through the process-wide
/// recorder: the numbers belong to this server's database, not to the process. Pairs without
/// jobs read 0.
async fn job_gauges(store: &Store) -> String {
    let counts = match tokio::time::timeout(READY_DB_TIMEOUT, store.job_counts()).await {
        Ok(Ok(counts)) => counts,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot count jobs for /metrics");
            return String::new();
        }
        Err(_) => {
            tracing::warn!("counting jobs for /metrics took too long");
            return String::new();
        }
    };
    let mut depth: std::collections::BTreeMap<(&'static str, JobState), i64> = JobKind::ALL
        .iter()
        .flat_map(|kind| {
            JobState::ALL
                .iter()
                .map(move |state| ((kind.as_str(), *state), 0))
        })
        .collect();
    for (kind, state, count) in counts {
        let kind = kodiai_runtime::jobs::kind_label(&kind);
        *depth.entry((kind, state)).or_insert(0) += count;
    }
    let mut text = String::from(
        "# HELP jobs_queue_depth Jobs in the database by kind and state.\n\
         # TYPE jobs_queue_depth gauge\n",
    );
    for ((kind, state), count) in depth {
        text.push_str(&format!(
            "jobs_queue_depth{{kind=\"{kind}\",state=\"{}\"}} {count}\n",
            state.as_str()
        ));
    }
    text
}

/// `GET /schema/kodiai.json`: the JSON Schema of `.kodiai.yml`, for editors and CI checks.
#[utoipa::path(get, path = "/schema/kodiai.json", tag = "operations",
    responses((status = 200, description = "JSON Schema (draft 2020-12) of .kodiai.yml",
        content_type = "application/schema+json", body = Object)))]
async fn repo_config_schema() -> Response {
    (
        [(header::CONTENT_TYPE, "application/schema+json")],
        axum::Json(kodiai_github_app::repo_config::json_schema()),
    )
        .into_response()
}

async fn not_found() -> StatusCode {
    StatusCode::NOT_FOUND
}

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    ApiError::internal(format_args!("handler panicked: {detail}")).into_response()
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let layer = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            middleware::X_REQUEST_ID.clone(),
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([middleware::X_REQUEST_ID.clone()])
        .max_age(Duration::from_secs(3600));
    if origins.iter().any(|o| o == "*") {
        // Any origin, never with credentials (browsers refuse the combination anyway).
        return Some(layer.allow_origin(AllowOrigin::any()));
    }
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(layer.allow_origin(list).allow_credentials(true))
}
