//! `kodiai bench ingress`: signed 20 KB `pull_request` deliveries with unique delivery ids sent
//! to a real `kodiai serve` on a new SQLite file; deliveries a second at full load, latency at a
//! fixed 1,000 a second, and the rows stored against the 202s (which must be equal).
//!
//! The client runs on the same machine as the server and takes some of its CPU; the figures
//! are for the server and the client together.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kodiai_store::{ConnectOptions, DatabaseLocation, Store};
use serde_json::json;
use tokio::task::JoinSet;

use super::{ServeProcess, percentile};

/// Targets of the ingress issue, on 2 cores.
const RATE_TARGET: f64 = 5000.0;
const P99_TARGET_MS: f64 = 10.0;
const SECRET: &str = "kodiai-bench-webhook-secret";

/// What `kodiai bench ingress` runs.
#[derive(Debug, Clone)]
pub struct IngressOptions {
    /// Deliveries of the full-load phase.
    pub deliveries: u32,
    /// Requests in flight at once during full load.
    pub concurrency: u32,
    /// Deliveries a second of the paced phase.
    pub rate: u32,
    /// Length of the paced phase.
    pub paced_secs: u32,
    /// Size of each payload.
    pub payload_bytes: usize,
    /// Job workers of the server (0: the jobs stay queued, only ingress is measured).
    pub workers: u32,
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

pub async fn ingress(exe: &Path, options: &IngressOptions) -> anyhow::Result<String> {
    let dir = tempfile::tempdir().context("creating a data folder")?;
    let db_path = dir.path().join("kodiai.db");
    let url = format!("sqlite://{}", db_path.display());
    let workers = options.workers.to_string();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("GITHUB_WEBHOOK_SECRET", SECRET),
        ("KODIAI_WORKERS", workers.as_str()),
        // A log line per request would measure the terminal: keep only start-up and warnings.
        (
            "RUST_LOG",
            "warn,kodiai=info,kodiai::http=warn,kodiai_runtime=info,kodiai_runtime::jobs=warn,kodiai_github_app=info",
        ),
    ];
    let mut server = ServeProcess::start(exe, dir.path(), &env).await?;
    let endpoint = format!("http://{}/webhooks/github", server.addr);
    let body = payload(options.payload_bytes)?;
    let signature = kodiai_github::webhook::sign(SECRET.as_bytes(), &body);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(usize::MAX)
        .build()
        .context("building the HTTP client")?;
    let sender = Arc::new(Sender {
        client,
        endpoint,
        body: body.into(),
        signature,
        accepted: AtomicU32::new(0),
    });

    // Warm-up: connections open, SQLite pages cached.
    let _ = full_load(&sender, 200, options.concurrency).await;
    let warm = sender.accepted.load(Ordering::Relaxed);
    let full = full_load(&sender, options.deliveries, options.concurrency).await;
    let paced = paced(&sender, options.rate, options.paced_secs).await;
    server.kill().await;

    let store = Store::connect(&ConnectOptions {
        location: DatabaseLocation::Sqlite(db_path),
        max_connections: 1,
    })
    .await?;
    let deliveries = store.delivery_count().await?;
    let jobs: i64 = store.job_counts().await?.iter().map(|(_, _, n)| n).sum();
    store.close().await;
    let accepted = i64::from(sender.accepted.load(Ordering::Relaxed));

    let mut out = String::new();
    let _ = writeln!(
        out,
        "kodiai bench ingress: signed {} KB pull_request deliveries with unique ids to `kodiai serve` \
         on SQLite ({} workers); client and server share this machine",
        options.payload_bytes / 1024,
        options.workers
    );
    let _ = writeln!(
        out,
        "{:<24} {:>8} {:>8} {:>7} {:>8} {:>10} {:>9} {:>9} {:>16}  verdict",
        "phase", "sent", "202", "failed", "time", "rate", "p50", "p99", "target"
    );
    let full_rate = f64::from(full.accepted) / full.took.as_secs_f64();
    row(
        &mut out,
        &format!("full load, {} in flight", options.concurrency),
        &full,
        &format!(">={RATE_TARGET:.0}/s"),
        if full_rate >= RATE_TARGET && full.failed == 0 {
            "ok"
        } else {
            "MISSED"
        },
    );
    let p99 = percentile_of(&paced.latencies_ms, 0.99);
    row(
        &mut out,
        &format!("paced, {}/s", options.rate),
        &paced,
        &format!("p99<{P99_TARGET_MS:.0}ms"),
        if p99 < P99_TARGET_MS && paced.failed == 0 {
            "ok"
        } else {
            "MISSED"
        },
    );
    let _ = writeln!(
        out,
        "rows stored: {deliveries} deliveries, {jobs} jobs; 202 answers: {accepted} (warm-up {warm} included): {}",
        if deliveries == accepted && jobs == accepted {
            "equal"
        } else {
            "NOT EQUAL"
        }
    );
    if deliveries != accepted || jobs != accepted {
        bail!("{out}rows stored and 202 answers differ");
    }
    Ok(out)
}

fn row(out: &mut String, name: &str, phase: &Phase, target: &str, verdict: &str) {
    let rate = f64::from(phase.accepted) / phase.took.as_secs_f64().max(f64::EPSILON);
    let _ = writeln!(
        out,
        "{:<24} {:>8} {:>8} {:>7} {:>8} {:>10} {:>9} {:>9} {:>16}  {verdict}",
        name,
        phase.sent,
        phase.accepted,
        phase.failed,
        format!("{:.2}s", phase.took.as_secs_f64()),
        format!("{rate:.0}/s"),
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

/// A `pull_request` `opened` payload of about `size` bytes (the body pads it), which routes to
/// a review job like a real one.
fn payload(size: usize) -> anyhow::Result<Vec<u8>> {
    let user = json!({"login": "octocat", "id": 1, "type": "User", "site_admin": false});
    let mut value = json!({
        "action": "opened",
        "number": 42,
        "pull_request": {
            "number": 42, "title": "Make the thing faster", "body": "", "state": "open",
            "draft": false, "user": user,
            "head": {"ref": "faster", "sha": "8e1e3e0c1a3f0f5a9cb1b4b6f0d6d2c1e9a7b5c3"},
            "base": {"ref": "main", "sha": "0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e"},
            "html_url": "https://github.com/octo-org/octo-repo/pull/42"
        },
        "repository": {"id": 7, "name": "octo-repo", "full_name": "octo-org/octo-repo",
                       "private": false, "owner": user, "default_branch": "main"},
        "installation": {"id": 99},
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
    body: bytes::Bytes,
    signature: String,
    accepted: AtomicU32,
}

impl Sender {
    /// Sends one delivery with a new id; `true` on 202.
    async fn send(&self) -> bool {
        let sent = self
            .client
            .post(&self.endpoint)
            .header("content-type", "application/json")
            .header("x-github-event", "pull_request")
            .header("x-github-delivery", uuid::Uuid::new_v4().to_string())
            .header("x-hub-signature-256", &self.signature)
            .body(self.body.clone())
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

/// `total` deliveries from `concurrency` senders as fast as the server answers.
async fn full_load(sender: &Arc<Sender>, total: u32, concurrency: u32) -> Phase {
    let next = Arc::new(AtomicU32::new(0));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let sender = Arc::clone(sender);
        let next = Arc::clone(&next);
        tasks.spawn(async move {
            let mut phase = Phase::default();
            while next.fetch_add(1, Ordering::Relaxed) < total {
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
