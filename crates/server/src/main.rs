//! The `kodiai` command line: parses arguments and configuration, then runs one command.
//!
//! Exit codes: 0 success, 1 a runtime failure (database unreachable, port taken), 2 bad usage
//! or bad configuration (one line that names the key, the value and what is expected).

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the command line's own output and error lines"
)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use kodiai::{server, telemetry};
use kodiai_runtime::config::{Config, Env};
use kodiai_runtime::jobs::WorkerSettings;

#[derive(Parser)]
#[command(
    name = "kodiai",
    version,
    about = "A self-hosted AI software engineer for GitHub"
)]
struct Cli {
    /// Configuration file (TOML). Default: ./kodiai.toml when it exists. Environment variables
    /// override it.
    #[arg(long, global = true, env = "KODIAI_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server and the job workers (the default command).
    Serve,
    /// Run job workers only, for more machines against one PostgreSQL database.
    Worker,
    /// Apply the database migrations and exit.
    Migrate,
    /// Show or validate the server configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Measure kodiai on this machine and print a table.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Set up the GitHub App.
    #[command(subcommand)]
    App(AppCommand),
    /// Talk to the configured model provider.
    #[command(subcommand)]
    Llm(LlmCommand),
    /// Run one agent task in a directory and print its events; exit 0 when it completed, 1
    /// when it ended otherwise, 2 on bad usage.
    Run(kodiai::run::RunArgs),
    /// Review the current branch of a local git checkout against its base with the configured
    /// model and print the findings with file and line (no GitHub needed); exit 0 when there
    /// are none, 1 when there are, 2 when it could not review.
    Review(kodiai::review_cli::ReviewArgs),
    /// Serve a set of kodiai's tools over MCP on stdin and stdout (for the CLI backends).
    Mcp(McpArgs),
}

#[derive(clap::Args)]
struct McpArgs {
    /// Which tools to serve.
    #[arg(value_enum)]
    server: McpServerName,
    /// The directory the workspace tools work in; they cannot leave it.
    #[arg(long, value_name = "DIR", required_if_eq("server", "workspace"))]
    dir: Option<PathBuf>,
    /// The running job's tool socket (the github-* servers relay to it; set by the job).
    #[arg(long, env = kodiai_agent::mcp::relay::SOCKET_VAR, value_name = "PATH", hide = true)]
    socket: Option<PathBuf>,
    /// The key of that socket (set by the job, in the environment only).
    #[arg(long, env = kodiai_agent::mcp::relay::KEY_VAR, hide = true, hide_env_values = true)]
    key: Option<String>,
}

/// The tool sets `kodiai mcp` serves.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum McpServerName {
    /// The workspace tools: read_file, list_files, search, edit_file, write_file, git_diff,
    /// git_log.
    Workspace,
    /// A review or mention job's progress and comment tools (update_progress, post_comment),
    /// relayed from the running job.
    GithubComment,
    /// A review job's create_inline_comment, relayed from the running job.
    GithubInlineComment,
    /// A job's get_ci_status, relayed from the running job.
    GithubCi,
    /// A mention job's commit_and_push and create_pull_request, relayed from the running job.
    GithubFiles,
}

#[derive(Subcommand)]
enum AppCommand {
    /// Print the GitHub App manifest for a server at URL (JSON), or with --html a page whose
    /// button creates the App on GitHub.
    Manifest {
        /// The server's public https URL; webhooks go to URL/webhooks/github.
        #[arg(long)]
        url: String,
        /// The App's name on GitHub.
        #[arg(long, default_value = "kodiai")]
        name: String,
        /// Print the HTML page with the create button instead of the JSON.
        #[arg(long)]
        html: bool,
        /// Create the App in this organization (with --html; default: your personal account).
        #[arg(long, requires = "html")]
        org: Option<String>,
        /// GitHub's web address (GitHub Enterprise Server: its own).
        #[arg(long, default_value = "https://github.com", requires = "html")]
        github_url: String,
    },
}

#[derive(Subcommand)]
enum LlmCommand {
    /// Send one short request; print the model, latency and tokens, or the error in one line.
    Ping {
        /// The model to ask, provider/model (default: the configured model).
        #[arg(long)]
        model: Option<String>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration as TOML, secrets masked.
    Print,
    /// Check the configuration; exit 0 when it is usable, 2 with the first problem otherwise.
    /// With FILE: check that `.kodiai.yml` instead and print what the bot would say about it.
    Check {
        /// A repository's `.kodiai.yml`.
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Cold start to a 200 from /ready on a new SQLite file, and memory after start.
    Startup {
        /// How many starts to measure.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
        runs: u32,
    },
    /// The job queue: enqueue no-op jobs, then drain them with 1, 4 and 16 workers, on SQLite
    /// and PostgreSQL; throughput and claim latency.
    Queue {
        /// No-op jobs per run.
        #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        jobs: u32,
        /// The PostgreSQL server: each run creates a database `kodiai_bench_<uuid>` there and
        /// drops it afterwards. When unreachable, only SQLite is measured.
        #[arg(
            long,
            env = "TEST_DATABASE_URL",
            default_value = "postgres://postgres@127.0.0.1:5432/postgres",
            hide_env_values = true
        )]
        database_url: String,
        /// Which backends to measure.
        #[arg(long, value_enum, default_value_t = BenchBackend::Both)]
        backend: BenchBackend,
    },
    /// Workspaces: a generated repository served over local smart HTTP; `git clone --depth=50`
    /// against a job checkout from a warm mirror.
    Checkout {
        /// Files in the generated repository.
        #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        files: u32,
        /// Commits in the generated repository.
        #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        commits: u32,
        /// Measurements of each step.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
        runs: u32,
    },
    /// Webhook ingress: signed 20 KB pull_request deliveries to `kodiai serve` on SQLite and
    /// PostgreSQL; deliveries a second at full load (alone, and with workers on slow jobs),
    /// p50/p99 at fixed rates, rows stored against 202s.
    Ingress {
        /// Deliveries of each full-load phase.
        #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
        deliveries: u32,
        /// Requests in flight at once during full load.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
        concurrency: u32,
        /// Deliveries a second of the paced phases (one phase per rate).
        #[arg(long, value_delimiter = ',', default_values_t = [500u32, 1000],
            value_parser = clap::value_parser!(u32).range(1..=100_000))]
        rate: Vec<u32>,
        /// Seconds of each paced phase.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=3600))]
        seconds: u32,
        /// Job workers of the HTTP-only server (0: jobs stay queued; only ingress is measured).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=256))]
        workers: u32,
        /// Workers of the slow-jobs server, whose review jobs wait on a model call (0: no
        /// slow-jobs phase).
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(0..=256))]
        slow_workers: u32,
        /// Milliseconds the fake model takes to answer each slow job.
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(0..=600_000))]
        model_delay_ms: u64,
        /// The PostgreSQL server: each run creates a database `kodiai_bench_<uuid>` there and
        /// drops it afterwards. When unreachable with `--backend both`, only SQLite is measured.
        #[arg(
            long,
            env = "TEST_DATABASE_URL",
            default_value = "postgres://postgres@127.0.0.1:5432/postgres",
            hide_env_values = true
        )]
        database_url: String,
        /// Which backends to measure.
        #[arg(long, value_enum, default_value_t = BenchBackend::Both)]
        backend: BenchBackend,
    },
    /// `kodiai serve` whose review jobs make one model call each (for `bench ingress`).
    #[command(hide = true)]
    IngressServer,
    /// The agent's `search` tool against ripgrep (`rg`, when on PATH) on a generated tree.
    Search {
        /// Files in the generated tree.
        #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(100..=1_000_000))]
        files: u32,
        /// Timed searches per pattern and tool.
        #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=1000))]
        runs: u32,
    },
    /// The review prompt of a synthetic pull request: build time, files in the prompt and
    /// skipped (which must add up to the files changed).
    ReviewContext {
        /// Changed files of the pull request.
        #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        files: u32,
        /// Timed builds.
        #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=1000))]
        runs: u32,
        /// The model whose context window sets the budget.
        #[arg(long, default_value = "anthropic/claude-sonnet-4-5")]
        model: String,
    },
    /// The agent loop's overhead per turn, with an instant in-process model and tool.
    Agent {
        /// Task lengths to measure, in turns.
        #[arg(long, value_delimiter = ',', default_values_t = [10u32, 100, 1000],
            value_parser = clap::value_parser!(u32).range(1..=100_000))]
        turns: Vec<u32>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BenchBackend {
    Sqlite,
    Postgres,
    Both,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // These read no server configuration: they work on a laptop without one.
    match &cli.command {
        Some(Command::Config(ConfigCommand::Check { file: Some(file) })) => {
            return check_repo_config(file);
        }
        Some(Command::App(command)) => {
            return match app(command) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("kodiai: {e}");
                    ExitCode::from(2)
                }
            };
        }
        _ => {}
    }
    let env: Env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let config = match Config::load(cli.config.as_deref(), &env) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("kodiai: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let command = cli.command.unwrap_or(Command::Serve);

    // One TLS provider for every client (database, GitHub, LLMs): aws-lc-rs (CRATES.md pitfall 1).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("kodiai: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Command::Mcp(args) = command {
        let code = runtime.block_on(mcp_server(args));
        // After a signal, a read of stdin may still block a thread: it must not keep the
        // process alive.
        runtime.shutdown_background();
        return code;
    }
    if let Command::Run(args) = command {
        return runtime.block_on(kodiai::run::command(&config, args));
    }
    if let Command::Review(args) = command {
        return runtime.block_on(kodiai::review_cli::command(&config, args));
    }
    let result = runtime.block_on(run(command, config));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kodiai: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(config, server::Setup::default()).await,
        Command::Worker => {
            telemetry::init_logging(&config.log);
            let token = tokio_util::sync::CancellationToken::new();
            let stop = token.clone();
            let signal = server::shutdown_signal();
            tokio::spawn(async move {
                signal.await;
                stop.cancel();
            });
            server::run_workers(config, None, token).await?;
            tracing::info!("stopped");
            Ok(())
        }
        Command::Migrate => {
            telemetry::init_logging(&config.log);
            let store = server::open_store(&config).await?;
            let applied = store.check_ready().await?;
            store.close().await;
            println!(
                "{}: {applied} migrations applied",
                config.database.url.redacted()
            );
            Ok(())
        }
        Command::Config(ConfigCommand::Print) => {
            print!("{}", config.to_masked_toml()?);
            Ok(())
        }
        // Both also run in `main` before the configuration is read; here for completeness.
        Command::App(command) => Ok(app(&command)?),
        Command::Config(ConfigCommand::Check { file: Some(file) }) => {
            match check_repo_config(&file) {
                code if code == ExitCode::SUCCESS => Ok(()),
                _ => anyhow::bail!("{}: invalid", file.display()),
            }
        }
        Command::Config(ConfigCommand::Check { file: None }) => {
            println!("configuration is valid");
            Ok(())
        }
        Command::Llm(LlmCommand::Ping { model }) => {
            let report = kodiai_runtime::llm::ping(&config.llm, model.as_deref())
                .await
                .context("llm ping failed")?;
            println!("{report}");
            Ok(())
        }
        // Handled in `main`, which owns its exit code.
        Command::Review(args) => {
            let code = kodiai::review_cli::command(&config, args).await;
            anyhow::ensure!(
                code == ExitCode::SUCCESS,
                "the review has findings or failed"
            );
            Ok(())
        }
        Command::Mcp(args) => {
            anyhow::ensure!(
                mcp_server(args).await == ExitCode::SUCCESS,
                "the MCP server failed"
            );
            Ok(())
        }
        Command::Run(args) => {
            let code = kodiai::run::command(&config, args).await;
            anyhow::ensure!(code == ExitCode::SUCCESS, "the task did not complete");
            Ok(())
        }
        Command::Bench(BenchCommand::Agent { turns }) => {
            print!("{}", kodiai_bench::agent::agent(&turns).await?);
            Ok(())
        }
        Command::Bench(BenchCommand::Startup { runs }) => {
            let exe = std::env::current_exe()?;
            let report = kodiai_bench::startup(&exe, runs).await?;
            print!("{report}");
            Ok(())
        }
        Command::Bench(BenchCommand::Queue {
            jobs,
            database_url,
            backend,
        }) => {
            let options = kodiai_bench::QueueOptions {
                jobs,
                workers: vec![1, 4, 16],
                keys: 64,
                sqlite: backend != BenchBackend::Postgres,
                postgres_url: (backend != BenchBackend::Sqlite).then_some(database_url),
                settings: WorkerSettings::from_config(&config.jobs),
            };
            let report = kodiai_bench::queue(&options).await?;
            print!("{report}");
            Ok(())
        }
        Command::Bench(BenchCommand::Checkout {
            files,
            commits,
            runs,
        }) => {
            let options = kodiai_bench::checkout::CheckoutOptions {
                files,
                commits,
                runs,
                settings: config.workspaces.settings(&config.data_dir),
            };
            print!("{}", kodiai_bench::checkout::checkout(&options).await?);
            Ok(())
        }
        Command::Bench(BenchCommand::Ingress {
            deliveries,
            concurrency,
            rate,
            seconds,
            workers,
            slow_workers,
            model_delay_ms,
            database_url,
            backend,
        }) => {
            bench_ingress(kodiai_bench::IngressOptions {
                deliveries,
                concurrency,
                rates: rate,
                paced_secs: seconds,
                payload_bytes: 20 * 1024,
                workers,
                sqlite: backend != BenchBackend::Postgres,
                postgres_url: (backend != BenchBackend::Sqlite).then_some(database_url),
                slow_workers,
                model_delay: std::time::Duration::from_millis(model_delay_ms),
            })
            .await
        }
        Command::Bench(BenchCommand::IngressServer) => {
            let setup = server::Setup {
                handlers: Some(kodiai_bench::slow_review_handlers(&config)?),
                ..Default::default()
            };
            serve(config, setup).await
        }
        Command::Bench(BenchCommand::ReviewContext { files, runs, model }) => {
            let options = kodiai_bench::review_context::ReviewContextOptions { files, runs, model };
            print!(
                "{}",
                kodiai_bench::review_context::review_context(options).await?
            );
            Ok(())
        }
        Command::Bench(BenchCommand::Search { files, runs }) => {
            let report =
                kodiai_bench::search::run(&kodiai_bench::search::SearchOptions { files, runs })
                    .await?;
            print!("{report}");
            Ok(())
        }
    }
}

/// `kodiai mcp NAME`: serves that tool set on stdin and stdout until the client closes stdin
/// or a signal comes; 2 for a bad `--dir` or a github-* server started outside a job, 1 when
/// serving fails. Nothing but MCP goes to stdout.
async fn mcp_server(args: McpArgs) -> ExitCode {
    use kodiai_agent::tools::{ToolRegistry, WorkspaceRoot, WorkspaceToolOptions};

    let cancel = tokio_util::sync::CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        server::shutdown_signal().await;
        stop.cancel();
    });
    let served = match args.server {
        McpServerName::Workspace => {
            let dir = args.dir.unwrap_or_default();
            let root = match WorkspaceRoot::new(&dir) {
                Ok(root) => root,
                Err(e) => {
                    eprintln!("kodiai: --dir {}: {e}", dir.display());
                    return ExitCode::from(2);
                }
            };
            let tools =
                kodiai_agent::tools::workspace_tools(&root, &WorkspaceToolOptions::default()).await;
            let mut registry = ToolRegistry::new();
            if let Err(e) = registry.register_all(tools) {
                eprintln!("kodiai: {e}");
                return ExitCode::FAILURE;
            }
            kodiai_agent::mcp::serve_stdio(registry, "workspace", cancel).await
        }
        McpServerName::GithubComment
        | McpServerName::GithubInlineComment
        | McpServerName::GithubCi
        | McpServerName::GithubFiles => {
            let group = match args.server {
                McpServerName::GithubComment => kodiai_runtime::engine::COMMENT_SERVER,
                McpServerName::GithubInlineComment => kodiai_runtime::engine::INLINE_COMMENT_SERVER,
                McpServerName::GithubCi => kodiai_runtime::engine::CI_SERVER,
                _ => kodiai_runtime::engine::FILES_SERVER,
            };
            let (Some(socket), Some(key)) = (args.socket, args.key) else {
                eprintln!(
                    "kodiai: `kodiai mcp {group}` serves a running job's tools: start it from a \
                     job, with {} and {} set",
                    kodiai_agent::mcp::relay::SOCKET_VAR,
                    kodiai_agent::mcp::relay::KEY_VAR
                );
                return ExitCode::from(2);
            };
            tokio::select! {
                relayed = kodiai_agent::mcp::relay_stdio(group, &socket, &key) => relayed,
                () = cancel.cancelled() => Ok(()),
            }
        }
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kodiai: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `kodiai config check FILE`: the messages the bot would post, 0 when the file is used, 2
/// when it is not (or cannot be read).
fn check_repo_config(file: &Path) -> ExitCode {
    use kodiai_github_app::repo_config;
    use std::io::Read;

    let mut text = Vec::new();
    // One byte more than the limit is enough to know that the file is too large.
    let limit = repo_config::MAX_FILE_BYTES as u64 + 1;
    let read = std::fs::File::open(file).and_then(|f| f.take(limit).read_to_end(&mut text));
    if let Err(e) = read {
        eprintln!("kodiai: {}: cannot read: {e}", file.display());
        return ExitCode::from(2);
    }
    let parsed = match String::from_utf8(text) {
        Ok(text) => repo_config::parse(&text),
        Err(_) => {
            eprintln!("kodiai: {}: not UTF-8 text", file.display());
            return ExitCode::from(2);
        }
    };
    print!(
        "{}",
        repo_config::render_check(&file.display().to_string(), &parsed)
    );
    if parsed.is_invalid() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// `kodiai app manifest`; a bad argument is one line (exit 2).
fn app(command: &AppCommand) -> Result<(), kodiai_github_app::app_manifest::ManifestError> {
    let AppCommand::Manifest {
        url,
        name,
        html,
        org,
        github_url,
    } = command;
    let result = kodiai_github_app::app_manifest::manifest(url, name).and_then(|manifest| {
        if *html {
            kodiai_github_app::app_manifest::html_form(&manifest, org.as_deref(), github_url)
        } else {
            Ok(format!("{manifest:#}\n"))
        }
    });
    print!("{}", result?);
    Ok(())
}

async fn bench_ingress(options: kodiai_bench::IngressOptions) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let report = kodiai_bench::ingress(&exe, &options).await?;
    print!("{report}");
    Ok(())
}

/// `kodiai serve`, and `kodiai bench ingress-server` with its own job handlers.
async fn serve(config: Config, setup: server::Setup) -> anyhow::Result<()> {
    telemetry::init_logging(&config.log);
    let database = config.database.url.redacted();
    // Before "listening": a SIGTERM right after that line must stop the server gracefully.
    let signal = server::shutdown_signal();
    let running = server::start(config, setup).await?;
    tracing::info!(addr = %running.addr, database = %database, version = telemetry::VERSION,
        workers = running.state.workers, "listening");
    let token = running.shutdown_token();
    tokio::spawn(async move {
        signal.await;
        tracing::info!(
            "shutting down: no new connections or jobs; finishing the requests and jobs in flight"
        );
        token.cancel();
    });
    running.wait().await?;
    tracing::info!("stopped");
    Ok(())
}
