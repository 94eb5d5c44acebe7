//! The deliveries API (SPEC §2), for operators: what came in from GitHub and what became of
//! it, one delivery with its stored payload, and a replay that routes a stored delivery again.
//! Every route needs the admin token ([`AdminAuth`]).

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use kodiai_protocol::{Delivery, DeliveryDetail, ErrorBody, Page, WebhookAck};
use kodiai_store::DeliveryFilter;
use kodiai_store::deliveries::parse_cursor;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::AdminAuth;
use super::page::{PageParams, PageQuery, non_empty, quoted};
use super::{ApiError, ApiJson, AppState};
use crate::ingress::Ingress;

/// The outcomes a list can be filtered by.
const OUTCOMES: &[&str] = &["job", "recorded", "ignored"];

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_deliveries))
        .routes(routes!(get_delivery))
        .routes(routes!(replay_delivery))
}

/// The filters of `GET /api/v1/deliveries`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DeliveryFilters {
    /// Only deliveries of this event (`X-GitHub-Event`).
    event: Option<String>,
    /// Only deliveries with this outcome: `job`, `recorded` or `ignored`.
    outcome: Option<String>,
}

/// `GET /api/v1/deliveries`: deliveries, newest first, one page at a time.
#[utoipa::path(get, path = "/api/v1/deliveries", tag = "deliveries",
    params(PageParams, DeliveryFilters),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "One page of deliveries, newest first", body = Page<Delivery>),
        (status = 400, description = "The cursor is not one this server handed out", body = ErrorBody),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 422, description = "An unknown outcome or parameter, or a limit out of range", body = ErrorBody)))]
async fn list_deliveries(
    _: AdminAuth,
    State(state): State<AppState>,
    query: PageQuery<DeliveryFilters>,
) -> Result<ApiJson<Page<Delivery>>, ApiError> {
    let cursor = query.cursor(parse_cursor)?;
    let outcome = non_empty(query.filters.outcome);
    if let Some(outcome) = &outcome
        && !OUTCOMES.contains(&outcome.as_str())
    {
        return Err(ApiError::unprocessable(format!(
            "outcome must be one of {}, not {:?}",
            OUTCOMES.join(", "),
            quoted(outcome)
        )));
    }
    let filter = DeliveryFilter {
        event: non_empty(query.filters.event),
        outcome,
    };
    let page = state
        .store
        .list_deliveries(&filter, query.limit, cursor)
        .await
        .map_err(ApiError::internal)?;
    Ok(ApiJson(page))
}

/// `GET /api/v1/deliveries/{id}`: one delivery with its payload and jobs.
#[utoipa::path(get, path = "/api/v1/deliveries/{id}", tag = "deliveries",
    params(("id" = String, Path, description = "The delivery's id (`X-GitHub-Delivery`)")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The delivery, its stored payload and its jobs", body = DeliveryDetail),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such delivery", body = ErrorBody)))]
async fn get_delivery(
    _: AdminAuth,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<ApiJson<DeliveryDetail>, ApiError> {
    state
        .store
        .delivery(&id)
        .await
        .map_err(ApiError::internal)?
        .map(ApiJson)
        .ok_or_else(|| no_such_delivery(&id))
}

/// `POST /api/v1/deliveries/{id}/replay`: routes the stored delivery again with the server's
/// current settings; a delivery that makes a job makes a new one.
#[utoipa::path(post, path = "/api/v1/deliveries/{id}/replay", tag = "deliveries",
    params(("id" = String, Path, description = "The delivery's id (`X-GitHub-Delivery`)")),
    security(("admin_token" = [])),
    responses(
        (status = 202, description = "Routed again; the outcome of this replay", body = WebhookAck),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such delivery", body = ErrorBody)))]
async fn replay_delivery(
    _: AdminAuth,
    State(state): State<AppState>,
    Extension(ingress): Extension<Arc<Ingress>>,
    Path(id): Path<String>,
) -> Result<(axum::http::StatusCode, ApiJson<WebhookAck>), ApiError> {
    let outcome = ingress
        .replay(&state.store, &id, state.clock.now())
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| no_such_delivery(&id))?;
    Ok((
        axum::http::StatusCode::ACCEPTED,
        ApiJson(WebhookAck {
            delivery_id: id,
            outcome,
        }),
    ))
}

fn no_such_delivery(id: &str) -> ApiError {
    ApiError::not_found(format!("no delivery with id {:?}", quoted(id)))
}
