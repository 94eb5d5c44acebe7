//! What every kind of kodiai's work runs on: the configuration ([`config`], parsed once in
//! `main` and passed down), the job runtime ([`jobs`]: handlers, workers, the queue's clock), the
//! engine ([`engine`]: configuration plus a task becomes a running agent, native or on a CLI) and
//! the model wiring ([`llm`]: the configured chain, its calls recorded in the store).
//!
//! The areas (the GitHub App, sessions, tickets, the fleet) build on this crate; none of it
//! serves HTTP.

pub mod config;
pub mod engine;
pub mod jobs;
pub mod llm;

pub use config::Config;
