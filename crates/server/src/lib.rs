//! kodiai, the service: configuration, the HTTP API and its start and stop, telemetry, and the
//! benchmarks. `main.rs` is the command line on top of this library; `kodiai-test-support`
//! starts the same server in tests.

pub mod app_manifest;
pub mod bench;
pub mod config;
pub mod context;
pub mod github;
pub mod github_tools;
pub mod handlers;
pub mod http;
pub mod ingress;
pub mod jobs;
pub mod llm;
pub mod repo_config;
pub mod review_cli;
pub mod run;
pub mod server;
pub mod telemetry;

pub use config::Config;
pub use http::AppState;
pub use server::{RunningServer, Setup, start};
