//! `kodiai bench ingress`: signed 20 KB `pull_request` deliveries with unique delivery ids sent
//! to a real `kodiai serve` on a new SQLite file and on a new PostgreSQL database, the same
//! deliveries and phases on each: deliveries a second at full load, latency at fixed rates, and
//! the rows stored against the 202s (which must be equal).
//!
//! A second server per backend runs the same full load while its workers run the review jobs
//! the deliveries make, each waiting on one real model call over HTTP (Anthropic's streamed
//! Messages API, answered by a local fake model after a set delay, 2 s by default, and recorded
//! in `llm_calls` as real calls are): ingest under real work, beside ingest alone. That server is
//! `kodiai bench ingress-server` ([`ingress_server`]): `kodiai serve` with the review handler
//! replaced by that one model call, since a real review also needs GitHub and a checkout.
//!
//! The client (and the fake model) run on the same machine as the server and take some of its
//! CPU; the figures are for the server and the client together.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::future::BoxFuture;
use kodiai_llm::{
    CallRecord, CallRecorder, CallScope, ChatRequest, Llm, Message, ModelSettings, Provider,
};
use kodiai_protocol::{JobKind, JobSpec, JobState};
use kodiai_store::{Backend, ConnectOptions, Store};
use serde_json::json;
use tokio::task::JoinSet;

use super::{BenchDb, ServeProcess, percentile, postgres_reachable};
use kodiai_runtime::config::Config;
use kodiai_runtime::jobs::{Clock, Handlers, JobContext, JobError};

/// Targets of the ingress issue, on 2 cores.
const RATE_TARGET: f64 = 5000.0;
const P99_TARGET_MS: f64 = 10.0;
/// PostgreSQL's full-load rate against SQLite's (issue 17).
const POSTGRES_SHARE_TARGET: f64 = 0.70;
/// Ingest with workers running slow jobs against ingest alone (issue 17).
const SLOW_SHARE_TARGET: f64 = 0.80;
const SECRET: &str = "kodiai-bench-webhook-secret";
/// Installations the deliveries are spread over (one signed body each), so that the jobs fall
/// under as many concurrency keys, as a server with many customers sees.
const INSTALLATIONS: i64 = 64;
/// Deliveries before each server's measured phases: connections open, pages cached.
const WARM_UP: u32 = 200;

/// What `kodiai bench ingress` runs.
#[derive(Debug, Clone)]
pub struct IngressOptions {
    /// Deliveries of the full-load phases.
    pub deliveries: u32,
    /// Requests in flight at once during full load.
    pub concurrency: u32,
    /// Deliveries a second of the paced phases, one phase per rate.
    pub rates: Vec<u32>,
    /// Length of each paced phase.
    pub paced_secs: u32,
    /// Size of each payload.
    pub payload_bytes: usize,
    /// Job workers of the HTTP-only server (0: the jobs stay queued, only ingress is measured).
    pub workers: u32,
    pub sqlite: bool,
    /// A PostgreSQL server to create each run's database on (and drop it from afterwards);
    /// `None` for SQLite only.
    pub postgres_url: Option<String>,
    /// Workers of the slow-jobs server (0: no slow-jobs phase).
    pub slow_workers: u32,
    /// How long the fake model takes to answer each job's call.
    pub model_delay: Duration,
}

/// The answers of one phase.
#[derive(Default)]
struct Phase {
    sent: u32,
    accepted: u32,
    /// Other statuses and transport errors.
    failed: u32,
    took: Duration,
    latencies_ms: Vec<f64>,
}

impl Phase {
    fn rate(&self) -> f64 {
        f64::from(self.accepted) / self.took.as_secs_f64().max(f64::EPSILON)
    }
}

/// One server's phases and rows.
struct ServerRun {
    backend: Backend,
    /// HTTP only, or with workers on slow jobs.
    slow: bool,
    full: Phase,
    paced: Vec<(u32, Phase)>,
    deliveries: i64,
    jobs: i64,
    succeeded: i64,
    model_calls: i64,
    accepted: i64,
    warm: u32,
}

impl ServerRun {
    fn rows_equal(&self) -> bool {
        self.deliveries == self.accepted && self.jobs == self.accepted
    }
}

pub async fn ingress(exe: &Path, options: &IngressOptions) -> anyhow::Result<String> {
    let mut notes = Vec::new();
    let mut postgres = None;
    if let Some(url) = &options.postgres_url {
        match postgres_reachable(url).await {
            Ok(()) => postgres = Some(url.as_str()),
            Err(why) if options.sqlite => notes.push(format!("{why}; benchmarking SQLite only")),
            Err(why) => bail!("{why}"),
        }
    }
    let deliveries = Arc::new(Deliveries::new(options.payload_bytes)?);
    let model = if options.slow_workers > 0 {
        Some(SlowModel::start(options.model_delay).await?)
    } else {
        None
    };

    let mut runs = Vec::new();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        for slow in [false, true] {
            if slow && model.is_none() {
                continue;
            }
            let Some(db) = BenchDb::measured(backend, options.sqlite, postgres).await? else {
                continue;
            };
            let model = if slow { model.as_ref() } else { None };
            let run = server_run(exe, &db, backend, model, options, &deliveries).await;
            db.drop_database().await;
            runs.push(run?);
        }
    }
    let out = report(options, &notes, &runs);
    if runs.iter().any(|r| !r.rows_equal()) {
        bail!("{out}rows stored and 202 answers differ");
    }
    Ok(out)
}

/// Starts a server on `db` (with slow jobs when `model` is given), runs its phases, kills it
/// and counts the rows.
async fn server_run(
    exe: &Path,
    db: &BenchDb,
    backend: Backend,
    model: Option<&SlowModel>,
    options: &IngressOptions,
    deliveries: &Arc<Deliveries>,
) -> anyhow::Result<ServerRun> {
    let dir = tempfile::tempdir().context("creating a data folder")?;
    let url = db.url();
    let workers = match model {
        Some(_) => options.slow_workers,
        None => options.workers,
    }
    .to_string();
    let model_url = model.map(|m| m.url.clone()).unwrap_or_default();
    let mut env = vec![
        ("DATABASE_URL", url.as_str()),
        ("GITHUB_WEBHOOK_SECRET", SECRET),
        ("KODIAI_WORKERS", workers.as_str()),
        // A log line per request would measure the terminal: keep only start-up and warnings.
        (
            "RUST_LOG",
            "warn,kodiai=info,kodiai::http=warn,kodiai_runtime=info,kodiai_runtime::jobs=warn,kodiai_github_app=info",
        ),
    ];
    let mut server = match model {
        None => ServeProcess::start(exe, dir.path(), &env).await?,
        Some(_) => {
            env.extend([
                ("ANTHROPIC_API_KEY", "kodiai-bench-model-key"),
                ("ANTHROPIC_BASE_URL", model_url.as_str()),
                ("KODIAI_MODEL", "anthropic/claude-sonnet-4-5"),
            ]);
            ServeProcess::start_command(exe, &["bench", "ingress-server"], dir.path(), &env).await?
        }
    };
    let endpoint = format!("http://{}/webhooks/github", server.addr);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(usize::MAX)
        .build()
        .context("building the HTTP client")?;
    let sender = Arc::new(Sender {
        client,
        endpoint,
        deliveries: Arc::clone(deliveries),
        next_body: AtomicU32::new(0),
        accepted: AtomicU32::new(0),
    });

    let _ = full_load(&sender, WARM_UP, options.concurrency, Duration::ZERO).await;
    let warm = sender.accepted.load(Ordering::Relaxed);
    // With slow jobs: every worker waiting on the model before the phase starts, and the phase
    // long enough for jobs to finish (and new ones to be claimed) during it.
    let mut at_least = Duration::ZERO;
    if let Some(model) = model {
        model.wait_for_calls(options.slow_workers).await?;
        at_least = options.model_delay * 2;
    }
    let calls_before = model.map_or(0, SlowModel::answered);
    let full = full_load(&sender, options.deliveries, options.concurrency, at_least).await;
    let model_calls = model.map_or(0, SlowModel::answered) - calls_before;
    let mut paced_phases = Vec::new();
    if model.is_none() {
        for &rate in &options.rates {
            paced_phases.push((rate, paced(&sender, rate, options.paced_secs).await));
        }
    }
    server.kill().await;

    let store = Store::connect(&ConnectOptions {
        location: db.location.clone(),
        max_connections: 1,
    })
    .await?;
    let stored = store.delivery_count().await;
    let counts = store.job_counts().await;
    store.close().await;
    let counts = counts?;
    let jobs: i64 = counts.iter().map(|(_, _, n)| n).sum();
    let succeeded: i64 = counts
        .iter()
        .filter(|(_, state, _)| *state == JobState::Succeeded)
        .map(|(_, _, n)| n)
        .sum();
    Ok(ServerRun {
        backend,
        slow: model.is_some(),
        full,
        paced: paced_phases,
        deliveries: stored?,
        jobs,
        succeeded,
        model_calls: i64::try_from(model_calls).unwrap_or(i64::MAX),
        accepted: i64::from(sender.accepted.load(Ordering::Relaxed)),
        warm,
    })
}

fn report(options: &IngressOptions, notes: &[String], runs: &[ServerRun]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "kodiai bench ingress: signed {} KB pull_request deliveries with unique ids (over {INSTALLATIONS} \
         installations) to `kodiai serve`, a fresh database per server; client and server share this machine",
        options.payload_bytes / 1024,
    );
    for note in notes {
        let _ = writeln!(out, "{note}");
    }
    let _ = writeln!(
        out,
        "{:<9} {:<34} {:>7} {:>7} {:>6} {:>8} {:>8} {:>9} {:>9} {:>14}  verdict",
        "backend", "phase", "sent", "202", "failed", "time", "rate", "p50", "p99", "target"
    );
    let http_only = |backend: Backend| runs.iter().find(|r| r.backend == backend && !r.slow);
    for run in runs {
        let backend = run.backend.as_str();
        if run.slow {
            let alone = http_only(run.backend).map(|r| r.full.rate());
            let share = alone.map(|a| run.full.rate() / a);
            let verdict = match share {
                Some(s) if s >= SLOW_SHARE_TARGET && run.full.failed == 0 => {
                    format!("ok ({:.0}% of HTTP only)", s * 100.0)
                }
                Some(s) => format!("MISSED ({:.0}% of HTTP only)", s * 100.0),
                None => "no HTTP-only figure".to_owned(),
            };
            row(
                &mut out,
                backend,
                &format!(
                    "full load, {} workers on {:.1}s jobs",
                    options.slow_workers,
                    options.model_delay.as_secs_f64()
                ),
                &run.full,
                &format!(">={:.0}% of above", SLOW_SHARE_TARGET * 100.0),
                &verdict,
            );
        } else {
            let ok = run.full.rate() >= RATE_TARGET && run.full.failed == 0;
            row(
                &mut out,
                backend,
                &format!("full load, {} in flight", options.concurrency),
                &run.full,
                &format!(">={RATE_TARGET:.0}/s"),
                if ok { "ok" } else { "MISSED" },
            );
            for (rate, phase) in &run.paced {
                let p99 = percentile_of(&phase.latencies_ms, 0.99);
                let ok = p99 < P99_TARGET_MS && phase.failed == 0;
                row(
                    &mut out,
                    backend,
                    &format!("paced, {rate}/s"),
                    phase,
                    &format!("p99<{P99_TARGET_MS:.0}ms"),
                    if ok { "ok" } else { "MISSED" },
                );
            }
        }
    }
    for run in runs {
        let _ = writeln!(
            out,
            "{} {}: rows stored: {} deliveries, {} jobs ({} succeeded); 202 answers: {} (warm-up {} included): {}{}",
            run.backend.as_str(),
            if run.slow { "slow jobs" } else { "HTTP only" },
            run.deliveries,
            run.jobs,
            run.succeeded,
            run.accepted,
            run.warm,
            if run.rows_equal() {
                "equal"
            } else {
                "NOT EQUAL"
            },
            if run.slow {
                format!(
                    "; model calls answered during the full load: {}",
                    run.model_calls
                )
            } else {
                String::new()
            }
        );
    }
    if let (Some(sqlite), Some(postgres)) =
        (http_only(Backend::Sqlite), http_only(Backend::Postgres))
    {
        let share = postgres.full.rate() / sqlite.full.rate().max(f64::EPSILON);
        let _ = writeln!(
            out,
            "postgres full load at {:.0}% of sqlite's (target >= {:.0}%): {}",
            share * 100.0,
            POSTGRES_SHARE_TARGET * 100.0,
            if share >= POSTGRES_SHARE_TARGET {
                "ok"
            } else {
                "MISSED"
            }
        );
    }
    out
}

fn row(out: &mut String, backend: &str, name: &str, phase: &Phase, target: &str, verdict: &str) {
    let _ = writeln!(
        out,
        "{:<9} {:<34} {:>7} {:>7} {:>6} {:>8} {:>8} {:>9} {:>9} {:>14}  {verdict}",
        backend,
        name,
        phase.sent,
        phase.accepted,
        phase.failed,
        format!("{:.2}s", phase.took.as_secs_f64()),
        format!("{:.0}/s", phase.rate()),
        format!("{:.2}ms", percentile_of(&phase.latencies_ms, 0.5)),
        format!("{:.2}ms", percentile_of(&phase.latencies_ms, 0.99)),
        target,
    );
}

fn percentile_of(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, q)
}

/// The signed bodies: one `pull_request` `opened` payload per installation, each about
/// `size` bytes (the body pads it), which routes to a review job like a real one.
struct Deliveries {
    bodies: Vec<(bytes::Bytes, String)>,
}

impl Deliveries {
    fn new(size: usize) -> anyhow::Result<Self> {
        let bodies = (1..=INSTALLATIONS)
            .map(|installation| {
                let body = payload(size, installation)?;
                let signature = kodiai_github::webhook::sign(SECRET.as_bytes(), &body);
                Ok((body.into(), signature))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { bodies })
    }
}

fn payload(size: usize, installation: i64) -> anyhow::Result<Vec<u8>> {
    let user = json!({"login": "octocat", "id": 1, "type": "User", "site_admin": false});
    let mut value = json!({
        "action": "opened",
        "number": 42,
        "pull_request": {
            "number": 42, "title": "Make the thing faster", "body": "", "state": "open",
            "draft": false, "user": user,
            "head": {"ref": "faster", "sha": "8e1e3e0c1a3f0f5a9cb1b4b6f0d6d2c1e9a7b5c3"},
            "base": {"ref": "main", "sha": "0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e"},
            "html_url": format!("https://github.com/octo-org-{installation}/octo-repo/pull/42")
        },
        "repository": {"id": 7, "name": "octo-repo",
                       "full_name": format!("octo-org-{installation}/octo-repo"),
                       "private": false, "owner": user, "default_branch": "main"},
        "installation": {"id": installation},
        "sender": user
    });
    let base = serde_json::to_vec(&value)?.len();
    value["pull_request"]["body"] =
        json!("lorem ipsum ".repeat(size.saturating_sub(base) / 12 + 1));
    Ok(serde_json::to_vec(&value)?)
}

struct Sender {
    client: reqwest::Client,
    endpoint: String,
    deliveries: Arc<Deliveries>,
    next_body: AtomicU32,
    accepted: AtomicU32,
}

impl Sender {
    /// Sends one delivery with a new id; `true` on 202.
    async fn send(&self) -> bool {
        let bodies = &self.deliveries.bodies;
        let index = self.next_body.fetch_add(1, Ordering::Relaxed) as usize % bodies.len().max(1);
        let Some((body, signature)) = bodies.get(index) else {
            return false;
        };
        let sent = self
            .client
            .post(&self.endpoint)
            .header("content-type", "application/json")
            .header("x-github-event", "pull_request")
            .header("x-github-delivery", uuid::Uuid::new_v4().to_string())
            .header("x-hub-signature-256", signature)
            .body(body.clone())
            .send()
            .await;
        let ok = matches!(&sent, Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED);
        if let Ok(response) = sent {
            // Read the answer to its end, so that the connection is reused.
            let _ = response.bytes().await;
        }
        if ok {
            self.accepted.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }
}

/// `total` deliveries (more if `at_least` has not passed yet) from `concurrency` senders as
/// fast as the server answers.
async fn full_load(
    sender: &Arc<Sender>,
    total: u32,
    concurrency: u32,
    at_least: Duration,
) -> Phase {
    let next = Arc::new(AtomicU32::new(0));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let sender = Arc::clone(sender);
        let next = Arc::clone(&next);
        tasks.spawn(async move {
            let mut phase = Phase::default();
            while next.fetch_add(1, Ordering::Relaxed) < total || started.elapsed() < at_least {
                let at = Instant::now();
                let ok = sender.send().await;
                phase.latencies_ms.push(at.elapsed().as_secs_f64() * 1000.0);
                phase.sent += 1;
                if ok {
                    phase.accepted += 1;
                } else {
                    phase.failed += 1;
                }
            }
            phase
        });
    }
    let mut all = Phase::default();
    while let Some(Ok(phase)) = tasks.join_next().await {
        all.sent += phase.sent;
        all.accepted += phase.accepted;
        all.failed += phase.failed;
        all.latencies_ms.extend(phase.latencies_ms);
    }
    all.took = started.elapsed();
    all
}

/// `rate` deliveries a second for `secs` seconds, each sent at its scheduled time whatever the
/// earlier ones are doing; latency counts from the scheduled time, so a server that falls
/// behind shows it (no coordinated omission).
async fn paced(sender: &Arc<Sender>, rate: u32, secs: u32) -> Phase {
    let total = rate.saturating_mul(secs);
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let started = tokio::time::Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..total {
        let due = started + interval * i;
        tokio::time::sleep_until(due).await;
        let sender = Arc::clone(sender);
        tasks.spawn(async move {
            let ok = sender.send().await;
            (ok, due.elapsed().as_secs_f64() * 1000.0)
        });
    }
    let mut phase = Phase::default();
    while let Some(Ok((ok, latency))) = tasks.join_next().await {
        phase.sent += 1;
        phase.latencies_ms.push(latency);
        if ok {
            phase.accepted += 1;
        } else {
            phase.failed += 1;
        }
    }
    phase.took = started.elapsed();
    phase
}

/// A fake model on port 0: `POST /v1/messages` answers a short text in Anthropic's streamed
/// format after `delay`, as a slow real model would. Stops when dropped.
struct SlowModel {
    url: String,
    answered: Arc<AtomicU64>,
    /// Calls received so far (answered or waiting).
    received: tokio::sync::watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl SlowModel {
    async fn start(delay: Duration) -> anyhow::Result<Self> {
        let answered = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&answered);
        let (calls, received) = tokio::sync::watch::channel(0u64);
        let calls = Arc::new(calls);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the fake model")?;
        let addr = listener.local_addr()?;
        // Every request is a model call (the bench's server sends nothing else here).
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counter = Arc::clone(&counter);
                let calls = Arc::clone(&calls);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_request| {
                        let counter = Arc::clone(&counter);
                        calls.send_modify(|n| *n += 1);
                        async move {
                            tokio::time::sleep(delay).await;
                            counter.fetch_add(1, Ordering::Relaxed);
                            let mut response = hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(anthropic_answer("Looks good to me.")),
                            ));
                            response.headers_mut().insert(
                                hyper::header::CONTENT_TYPE,
                                hyper::header::HeaderValue::from_static("text/event-stream"),
                            );
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            url: format!("http://{addr}"),
            answered,
            received,
            task,
        })
    }

    /// Waits until `calls` calls have come in (30 s at most: then the workers are not calling).
    async fn wait_for_calls(&self, calls: u32) -> anyhow::Result<()> {
        let mut received = self.received.clone();
        tokio::time::timeout(
            Duration::from_secs(30),
            received.wait_for(|n| *n >= u64::from(calls)),
        )
        .await
        .context("the workers did not call the model within 30 s")?
        .context("the fake model stopped")?;
        Ok(())
    }

    fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }
}

impl Drop for SlowModel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A streamed Anthropic Messages answer of one text block.
fn anthropic_answer(text: &str) -> String {
    let events = [
        (
            "message_start",
            json!({"type": "message_start", "message": {
                "id": format!("msg_bench_{}", uuid::Uuid::new_v4().simple()), "type": "message",
                "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 1200, "output_tokens": 1}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                   "usage": {"output_tokens": 40}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ];
    events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect()
}

/// The job handlers of `kodiai bench ingress-server`, which is `kodiai serve` with these: its
/// review jobs each make one model call (the configured model, recorded in `llm_calls`) and
/// succeed with its answer; every other part of the server is the real one.
pub fn slow_review_handlers(config: &Config) -> anyhow::Result<Handlers> {
    let settings = kodiai_runtime::llm::settings(&config.llm)?;
    let recorder = Arc::new(LateRecorder::default());
    let llm = Llm::from_settings(&settings, Arc::clone(&recorder) as Arc<dyn CallRecorder>)?;
    let llm = Arc::new(llm);
    let handlers = Handlers::builtin().with(JobKind::Review, move |ctx: JobContext| {
        let llm = Arc::clone(&llm);
        let recorder = Arc::clone(&recorder);
        async move {
            let _ = recorder.store.set(ctx.store().clone());
            let JobSpec::Review(job) = ctx.spec() else {
                return Err(JobError::permanent("not a review job"));
            };
            let request = ChatRequest {
                system: "You review pull requests.".into(),
                messages: vec![Message::user(format!(
                    "Review {}#{} at {}.",
                    job.repository, job.pull_number, job.head_sha
                ))],
                tools: Vec::new(),
                settings: ModelSettings {
                    model: llm.model().model.clone(),
                    max_tokens: 1024,
                    temperature: None,
                    thinking_budget: None,
                },
            };
            let scoped = llm.scoped(CallScope {
                job_id: Some(ctx.job().id.clone()),
                session_id: None,
            });
            let answer = scoped
                .complete(&request)
                .await
                .map_err(|e| JobError::transient(e.to_string()))?;
            Ok(json!({ "answer_blocks": answer.message.content.len() }))
        }
    });
    Ok(handlers)
}

/// Records calls in the store of the first job that ran (the server opens its store itself).
#[derive(Default)]
struct LateRecorder {
    store: OnceLock<Store>,
}

impl CallRecorder for LateRecorder {
    fn record(&self, call: CallRecord) -> BoxFuture<'static, ()> {
        match self.store.get() {
            Some(store) => kodiai_runtime::llm::StoreRecorder {
                store: store.clone(),
                clock: Clock::System,
            }
            .record(call),
            None => Box::pin(async {}),
        }
    }
}
