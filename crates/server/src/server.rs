//! Starting and stopping the service: open and migrate the store, bind, serve until told to
//! stop, then drain in-flight requests within the grace period.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use kodiai_store::{ConnectOptions, Store};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::http::{self, AppState};
use crate::telemetry;
use kodiai_runtime::config::Config;
use kodiai_runtime::jobs::{Clock, Handlers, WorkerPool, WorkerSettings};

/// Opens the configured database and applies the embedded migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let store = Store::connect(&ConnectOptions {
        location: config.database.url.clone(),
        max_connections: config.database.max_connections,
    })
    .await?;
    store
        .migrate()
        .await
        .with_context(|| format!("migrating {}", config.database.url.redacted()))?;
    Ok(store)
}

/// How often leftovers of crashed jobs are looked for in the workspaces folder.
const WORKSPACE_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);

/// Opens `<data_dir>/workspaces` and sweeps it now and every [`WORKSPACE_SWEEP_INTERVAL`] until
/// `shutdown` fires: job folders of crashed processes, stale git locks, the cache quota.
async fn start_workspace_sweeper(
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let workspaces =
        kodiai_agent::workspace::Workspaces::open(config.workspaces.settings(&config.data_dir))
            .await
            .context("opening the workspaces folder")?;
    workspaces.spawn_sweeper(WORKSPACE_SWEEP_INTERVAL, shutdown.clone().cancelled_owned());
    Ok(())
}

/// What a server runs beyond the configuration: extra routes (tests add their own), the job
/// handlers, and the queue's clock.
#[derive(Default)]
pub struct Setup {
    pub routes: Router<AppState>,
    /// The workers' handlers; `None`: kodiai's own for the configuration
    /// ([`kodiai_github_app::handlers::for_config`]).
    pub handlers: Option<Handlers>,
    pub clock: Clock,
}

/// A server that is accepting connections, with its workers running.
pub struct RunningServer {
    /// The address actually bound (the configured port may be 0).
    pub addr: SocketAddr,
    pub state: AppState,
    shutdown: CancellationToken,
    /// Resolves to whether every request finished (`false`: the grace period ran out).
    task: JoinHandle<std::io::Result<bool>>,
    /// Shuts the worker pool down once the shutdown token fires.
    workers: Option<JoinHandle<()>>,
}

impl RunningServer {
    /// Cancelling this token starts a graceful shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the server has stopped (after the token is cancelled and requests drained,
    /// or the grace period ran out), then closes the store.
    pub async fn wait(self) -> anyhow::Result<()> {
        let drained = self
            .task
            .await
            .context("the server task failed")?
            .context("serving HTTP")?;
        if let Some(workers) = self.workers {
            workers.await.context("the worker pool failed")?;
        }
        // Closing waits for every pooled connection to come back; after a cut-short drain some
        // never will (their requests were abandoned), and the process is ending anyway.
        if drained {
            self.state.store.close().await;
        }
        Ok(())
    }

    /// Starts a graceful shutdown and waits for it.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }
}

/// Opens the store, binds the configured address, starts the configured workers and serves the
/// built-in routes and `setup`'s until the returned server's shutdown token is cancelled.
pub async fn start(config: Config, setup: Setup) -> anyhow::Result<RunningServer> {
    // Before the first request, so that no measurement goes to the no-op recorder.
    let _ = telemetry::metrics();
    let store = open_store(&config).await?;
    let bind = SocketAddr::new(config.server.host, config.server.port);
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let addr = listener.local_addr().context("reading the bound address")?;

    let grace = config.server.shutdown_grace();
    let shutdown = CancellationToken::new();
    start_workspace_sweeper(&config, &shutdown).await?;
    let handlers = match setup.handlers {
        Some(handlers) => handlers,
        None => kodiai_github_app::handlers::for_config(&config, &store, &setup.clock).await?,
    };
    let size = config.jobs.workers;
    let workers = (size > 0).then(|| {
        let pool = WorkerPool::start(
            store.clone(),
            handlers,
            WorkerSettings::from_config(&config.jobs),
            setup.clock.clone(),
            size,
        );
        let token = shutdown.clone();
        tokio::spawn(async move {
            token.cancelled().await;
            pool.shutdown(grace).await;
        })
    });
    let state = AppState {
        config: Arc::new(config),
        store,
        clock: setup.clock,
        shutdown: shutdown.clone(),
        workers: size,
    };
    let app = http::router(state.clone(), setup.routes);

    let serve = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future();
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        tokio::select! {
            result = serve => result.map(|()| true),
            () = async {
                token.cancelled().await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!(grace_secs = grace.as_secs(), "shutdown grace period over; dropping the requests still open");
                Ok(false)
            }
        }
    });
    Ok(RunningServer {
        addr,
        state,
        shutdown,
        task,
        workers,
    })
}

/// `kodiai worker`: the configured workers (`handlers`, default kodiai's own) without an HTTP server, until `shutdown` fires; then
/// running jobs get the grace period to finish and the rest go back to the queue.
pub async fn run_workers(
    config: Config,
    handlers: Option<Handlers>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let handlers = match handlers {
        Some(handlers) => handlers,
        None => kodiai_github_app::handlers::for_config(&config, &store, &Clock::System).await?,
    };
    start_workspace_sweeper(&config, &shutdown).await?;
    let size = config.jobs.workers.max(1);
    let pool = WorkerPool::start(
        store.clone(),
        handlers,
        WorkerSettings::from_config(&config.jobs),
        Clock::System,
        size,
    );
    tracing::info!(workers = size, database = %config.database.url.redacted(), "workers running");
    shutdown.cancelled().await;
    tracing::info!("shutting down: no new jobs; finishing the jobs that run");
    pool.shutdown(config.server.shutdown_grace()).await;
    store.close().await;
    Ok(())
}

/// Resolves at the first SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this is
/// called, not when the future is first polled, so call it before announcing readiness: a
/// signal that arrives between the two must not hit the default handler and kill the process.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let terminate = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            match (terminate, interrupt) {
                (Ok(mut terminate), Ok(mut interrupt)) => {
                    tokio::select! {
                        _ = terminate.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM or SIGINT; falling back to Ctrl-C only");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
