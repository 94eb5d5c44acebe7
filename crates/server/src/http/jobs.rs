//! The jobs API (SPEC §4), for operators: list jobs, read one with its event log, follow its
//! events live as server-sent events, cancel and retry. Every route needs the admin token
//! ([`AdminAuth`]).
//!
//! Handlers read the store and change jobs only through its cancel and retry; the workers see
//! those changes through the database (a cancelled job's worker finds its lease gone).

use std::collections::VecDeque;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use kodiai_protocol::{ErrorBody, Job, JobDetail, JobEvent, JobEventKind, JobKind, JobState, Page};
use kodiai_store::{JobFilter, Signal, Store, Subscription, Transition};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::AdminAuth;
use super::page::{PageParams, PageQuery, non_empty, quoted};
use super::{ApiError, ApiJson, AppState};

/// Events read from the store at once (job detail and event streams).
const EVENT_BATCH: u32 = 500;
/// An event stream reads the store this often even without a signal: signals are hints, and a
/// lost one must cost at most this much latency.
const STREAM_POLL: Duration = Duration::from_secs(1);
/// Comments on an idle event stream, so that proxies and clients do not time it out.
const STREAM_KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The reason recorded on jobs cancelled through this API.
const CANCEL_REASON: &str = "cancelled through the API";

/// The routes of this module, with their OpenAPI descriptions.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_jobs))
        .routes(routes!(get_job))
        .routes(routes!(job_events))
        .routes(routes!(cancel_job))
        .routes(routes!(retry_job))
}

/// The filters of `GET /api/v1/jobs`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct JobFilters {
    /// Only jobs of this kind.
    #[param(value_type = Option<JobKind>)]
    kind: Option<String>,
    /// Only jobs in this state.
    #[param(value_type = Option<JobState>)]
    state: Option<String>,
    /// Only jobs with this concurrency key (e.g. `installation:42`).
    key: Option<String>,
}

impl JobFilters {
    fn check(self) -> Result<JobFilter, ApiError> {
        let kind = non_empty(self.kind)
            .map(|kind| kind.parse::<JobKind>())
            .transpose()
            .map_err(|e| ApiError::unprocessable(format!("kind: {e}")))?;
        let state = non_empty(self.state)
            .map(|state| state.parse::<JobState>())
            .transpose()
            .map_err(|e| ApiError::unprocessable(format!("state: {e}")))?;
        Ok(JobFilter {
            kind: kind.map(|kind| kind.as_str().to_owned()),
            state,
            concurrency_key: non_empty(self.key),
        })
    }
}

/// `GET /api/v1/jobs`: jobs, newest first, one page at a time.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs",
    params(PageParams, JobFilters),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "One page of jobs, newest first", body = Page<Job>),
        (status = 400, description = "The cursor is not one this server handed out", body = ErrorBody),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 422, description = "An unknown kind, state or parameter, or a limit out of range", body = ErrorBody)))]
async fn list_jobs(
    _: AdminAuth,
    State(state): State<AppState>,
    query: PageQuery<JobFilters>,
) -> Result<ApiJson<Page<Job>>, ApiError> {
    // The cursor is a job id the server handed out; anything else is a malformed request.
    let cursor = query.cursor(canonical_uuid)?;
    let filter = query.filters.check()?;
    let page = state
        .store
        .list_jobs(&filter, query.limit, cursor.as_deref())
        .await
        .map_err(ApiError::internal)?;
    Ok(ApiJson(page))
}

/// `GET /api/v1/jobs/{id}`: one job and its whole event log.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The job's id (a UUID)")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The job and its events, oldest first", body = JobDetail),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody)))]
async fn get_job(
    _: AdminAuth,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<ApiJson<JobDetail>, ApiError> {
    let id = job_id(&id)?;
    let job = find_job(&state.store, &id).await?;
    let mut events: Vec<JobEvent> = Vec::new();
    loop {
        let after = events.last().map_or(0, |event| event.seq);
        let batch = state
            .store
            .events_after(&id, after, EVENT_BATCH)
            .await
            .map_err(ApiError::internal)?;
        let full = batch.len() >= EVENT_BATCH as usize;
        events.extend(batch);
        if !full {
            break;
        }
    }
    Ok(ApiJson(JobDetail { job, events }))
}

/// `GET /api/v1/jobs/{id}/events`: the job's events as server-sent events, then live ones.
///
/// Each event is sent with `id: <seq>`, `event: <kind>` and the [`JobEvent`] as JSON data; a
/// client that reconnects with `Last-Event-ID` gets what came after. The stream ends once the
/// job is final and every event is sent; connecting to a final job with nothing left to send
/// answers 204, which tells browsers' `EventSource` to stop reconnecting.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/events", tag = "jobs",
    params(
        ("id" = String, Path, description = "The job's id (a UUID)"),
        ("Last-Event-ID" = Option<i64>, Header, description = "Send only the events after this `seq`")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "`text/event-stream`: one event per job event (`id`: seq, \
            `event`: kind, `data`: the event as JSON), ending after the job's final `finished` \
            event; comments keep an idle stream open", content_type = "text/event-stream", body = JobEvent),
        (status = 204, description = "The job is final and has no events after `Last-Event-ID`"),
        (status = 400, description = "The id is not a UUID, or `Last-Event-ID` is not a sequence number", body = ErrorBody),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody)))]
async fn job_events(
    _: AdminAuth,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = job_id(&id)?;
    let after = last_event_id(&headers)?;
    // Subscribed before the first read: an event stored after that read signals this
    // subscription, so the stream cannot miss it while it waits.
    let signals = state.store.subscribe().await.map_err(ApiError::internal)?;
    let mut follow = Follow {
        store: state.store.clone(),
        shutdown: state.shutdown.clone(),
        job_id: id,
        signals,
        read_seq: after,
        pending: VecDeque::new(),
        read_again: false,
        done: false,
    };
    match follow.read().await {
        Ok(true) => {}
        Ok(false) => return Err(no_such_job(&follow.job_id)),
        Err(e) => return Err(ApiError::internal(e)),
    }
    if follow.done && follow.pending.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let mut response = Sse::new(follow.into_stream())
        .keep_alive(KeepAlive::new().interval(STREAM_KEEP_ALIVE))
        .into_response();
    // Reverse proxies (nginx) buffer responses unless told not to, which would hold events back.
    response.headers_mut().insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    Ok(response)
}

/// `POST /api/v1/jobs/{id}/cancel`: stops a queued or running job for good.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = String, Path, description = "The job's id (a UUID)")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The job, now `cancelled`; a running job's handler is told \
            to stop and what it recorded is kept", body = Job),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job is already final; the message names its state", body = ErrorBody)))]
async fn cancel_job(
    _: AdminAuth,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<ApiJson<Job>, ApiError> {
    let id = job_id(&id)?;
    let transition = state
        .store
        .cancel_job(&id, CANCEL_REASON, state.clock.now())
        .await
        .map_err(ApiError::internal)?;
    let job = answer(&id, transition, |current| {
        format!("job {id} is already {current}; only queued or running jobs can be cancelled")
    })?;
    tracing::info!(job_id = %id, "job cancelled through the API");
    Ok(ApiJson(job))
}

/// `POST /api/v1/jobs/{id}/retry`: queues a failed or cancelled job again.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/retry", tag = "jobs",
    params(("id" = String, Path, description = "The job's id (a UUID)")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The job, `queued` again with its attempts reset; its \
            event log (and the steps already done) is kept", body = Job),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job is not failed or cancelled; the message names its state", body = ErrorBody)))]
async fn retry_job(
    _: AdminAuth,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<ApiJson<Job>, ApiError> {
    let id = job_id(&id)?;
    let transition = state
        .store
        .retry_job(&id, state.clock.now())
        .await
        .map_err(ApiError::internal)?;
    let job = answer(&id, transition, |current| {
        format!("job {id} is {current}; only failed or cancelled jobs can be retried")
    })?;
    tracing::info!(job_id = %id, "job queued again through the API");
    Ok(ApiJson(job))
}

/// Follows one job's event log: what is stored after `read_seq`, then what arrives, until the
/// job is final and everything is sent, the server shuts down, or the client goes away (the
/// stream is dropped).
struct Follow {
    store: Store,
    shutdown: CancellationToken,
    job_id: String,
    signals: Subscription,
    /// The `seq` of the last event read from the store.
    read_seq: i64,
    /// Read, not yet sent.
    pending: VecDeque<JobEvent>,
    /// Read the store again at once, without waiting for a signal.
    read_again: bool,
    /// Nothing will follow what is pending.
    done: bool,
}

impl Follow {
    /// The events as a stream. A database error ends it with that error, which aborts the
    /// response (rather than closing it as if the job were done), so the client reconnects with
    /// `Last-Event-ID`.
    fn into_stream(
        self,
    ) -> impl Stream<Item = Result<Event, kodiai_store::Error>> + Send + 'static {
        futures::stream::unfold(self, |mut follow| async move {
            match follow.next().await {
                Ok(Some(event)) => Some((Ok(event), follow)),
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(job_id = %follow.job_id, error = %e, "reading job events failed; aborting the event stream");
                    follow.done = true;
                    follow.pending.clear();
                    Some((Err(e), follow))
                }
            }
        })
    }

    /// The next SSE event, or `None` to end the stream.
    async fn next(&mut self) -> kodiai_store::Result<Option<Event>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                if let Some(sse) = sse_event(&event) {
                    return Ok(Some(sse));
                }
                continue;
            }
            if self.done || self.shutdown.is_cancelled() {
                return Ok(None);
            }
            if !self.read_again {
                tokio::select! {
                    () = self.shutdown.cancelled() => return Ok(None),
                    () = wait_for_event(&mut self.signals, &self.job_id, self.read_seq) => {}
                    () = tokio::time::sleep(STREAM_POLL) => {}
                }
            }
            if !self.read().await? {
                // The job is gone (deleted): nothing more will come.
                return Ok(None);
            }
        }
    }

    /// Reads the job's state, then its events after `read_seq`, and decides whether to read
    /// again at once, wait, or end after the pending events. `false`: no such job.
    async fn read(&mut self) -> kodiai_store::Result<bool> {
        // The state first: if the job was final then, its `finished` event was already stored
        // (they are written together), so the read below sees every event there will be.
        let Some(job) = self.store.job(&self.job_id).await? else {
            return Ok(false);
        };
        let events = self
            .store
            .events_after(&self.job_id, self.read_seq, EVENT_BATCH)
            .await?;
        let full = events.len() >= EVENT_BATCH as usize;
        let last_kind = events.last().map(|event| event.kind);
        if let Some(last) = events.last() {
            self.read_seq = last.seq;
        }
        self.pending.extend(events);
        let final_now = job.state.is_final();
        // Done when the job was final and nothing was read, or the read ends with its
        // `finished` event. (A read that ends otherwise means it was retried meanwhile.)
        self.done = !full && final_now && matches!(last_kind, None | Some(JobEventKind::Finished));
        // A job that finished after its state was read: its signal may be older than this read,
        // so look again now rather than wait for one.
        self.read_again = full || (!final_now && matches!(last_kind, Some(JobEventKind::Finished)));
        Ok(true)
    }
}

/// Resolves at a signal that job `job_id` has an event after `after` (or that signals were
/// lost). Signals of events already read are skipped.
async fn wait_for_event(signals: &mut Subscription, job_id: &str, after: i64) {
    loop {
        match signals.recv().await {
            Signal::JobEvent {
                job_id: ref id,
                seq,
                ..
            } if id == job_id && seq > after => return,
            Signal::Resync => return,
            Signal::JobEvent { .. } | Signal::JobsQueued => {}
        }
    }
}

/// One job event as an SSE event. `None` only if the event cannot be serialised, which a
/// `JobEvent` always can; then it is logged and skipped rather than ending the stream.
fn sse_event(event: &JobEvent) -> Option<Event> {
    match Event::default()
        .id(event.seq.to_string())
        .event(event.kind.as_str())
        .json_data(event)
    {
        Ok(sse) => Some(sse),
        Err(e) => {
            tracing::error!(job_id = %event.job_id, seq = event.seq, error = %e, "cannot serialise a job event");
            None
        }
    }
}

/// The `Last-Event-ID` header as a `seq` (0 when absent or empty, as `EventSource` sends it).
fn last_event_id(headers: &HeaderMap) -> Result<i64, ApiError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(0);
    };
    let text = value.to_str().unwrap_or("\u{fffd}").trim();
    if text.is_empty() {
        return Ok(0);
    }
    text.parse::<i64>()
        .ok()
        .filter(|seq| *seq >= 0)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "Last-Event-ID must be the id (a sequence number) of an event of this stream, not {:?}",
                quoted(text)
            ))
        })
}

/// A job id from the path, in the form the store keeps (lowercase, hyphenated).
fn job_id(text: &str) -> Result<String, ApiError> {
    canonical_uuid(text).ok_or_else(|| {
        ApiError::bad_request(format!("job id must be a UUID, not {:?}", quoted(text)))
    })
}

async fn find_job(store: &Store, id: &str) -> Result<Job, ApiError> {
    store
        .job(id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| no_such_job(id))
}

/// The answer to a cancel or retry: the job, 409 with `conflict`'s message when its state does
/// not allow it, or 404.
fn answer(
    id: &str,
    transition: Option<Transition>,
    conflict: impl FnOnce(JobState) -> String,
) -> Result<Job, ApiError> {
    match transition {
        Some(Transition::Done(job)) => Ok(*job),
        Some(Transition::NotAllowed(current)) => Err(ApiError::conflict(conflict(current))),
        None => Err(no_such_job(id)),
    }
}

fn no_such_job(id: &str) -> ApiError {
    ApiError::not_found(format!("no job with id {id}"))
}

fn canonical_uuid(text: &str) -> Option<String> {
    uuid::Uuid::parse_str(text.trim())
        .ok()
        .map(|id| id.hyphenated().to_string())
}
