//! kodiai, the service: the HTTP API and its start and stop, the webhook ingress, telemetry,
//! and the `kodiai run` and `kodiai review` commands. `main.rs` is the command line on top of
//! this library; the server's tests start the same server in-process.

pub mod http;
pub mod ingress;
pub mod review_cli;
pub mod run;
pub mod server;
pub mod telemetry;

pub use http::AppState;
pub use kodiai_runtime::Config;
pub use server::{RunningServer, Setup, start};
