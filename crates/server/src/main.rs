//! The `kodiai` command line: parses arguments and configuration, then runs one command.
//!
//! Exit codes: 0 success, 1 a runtime failure (database unreachable, port taken), 2 bad usage
//! or bad configuration (one line that names the key, the value and what is expected).

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the command line's own output and error lines"
)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kodiai::config::{Config, Env};
use kodiai::jobs::WorkerSettings;
use kodiai::{bench, server, telemetry};

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
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration as TOML, secrets masked.
    Print,
    /// Check the configuration; exit 0 when it is usable, 2 with the first problem otherwise.
    Check,
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
    /// The agent's `search` tool against ripgrep (`rg`, when on PATH) on a generated tree.
    Search {
        /// Files in the generated tree.
        #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(100..=1_000_000))]
        files: u32,
        /// Timed searches per pattern and tool.
        #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=1000))]
        runs: u32,
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
        Command::Serve => serve(config).await,
        Command::Worker => {
            telemetry::init_logging(&config.log);
            let token = tokio_util::sync::CancellationToken::new();
            let stop = token.clone();
            let signal = server::shutdown_signal();
            tokio::spawn(async move {
                signal.await;
                stop.cancel();
            });
            server::run_workers(config, kodiai::jobs::Handlers::builtin(), token).await?;
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
        Command::Config(ConfigCommand::Check) => {
            println!("configuration is valid");
            Ok(())
        }
        Command::Bench(BenchCommand::Startup { runs }) => {
            let exe = std::env::current_exe()?;
            let report = bench::startup(&exe, runs).await?;
            print!("{report}");
            Ok(())
        }
        Command::Bench(BenchCommand::Queue {
            jobs,
            database_url,
            backend,
        }) => {
            let options = bench::QueueOptions {
                jobs,
                workers: vec![1, 4, 16],
                keys: 64,
                sqlite: backend != BenchBackend::Postgres,
                postgres_url: (backend != BenchBackend::Sqlite).then_some(database_url),
                settings: WorkerSettings::from_config(&config.jobs),
            };
            let report = bench::queue(&options).await?;
            print!("{report}");
            Ok(())
        }
        Command::Bench(BenchCommand::Search { files, runs }) => {
            let report = bench::search::run(&bench::search::SearchOptions { files, runs }).await?;
            print!("{report}");
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    telemetry::init_logging(&config.log);
    let database = config.database.url.redacted();
    // Before "listening": a SIGTERM right after that line must stop the server gracefully.
    let signal = server::shutdown_signal();
    let running = server::start(config, server::Setup::default()).await?;
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
