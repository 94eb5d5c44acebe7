//! Integration tests of the kodiai server: the real HTTP server (in process, through
//! `suite/harness.rs`'s `TestApp`) and the real binary (for exit codes and signals), on SQLite and
//! PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod suite {
    // First: its `app_test!` is used by the suites after it.
    #[macro_use]
    mod harness;

    mod cli;
    mod common;
    mod errors;
    mod github_client;
    mod github_jobs;
    mod jobs_api;
    mod llm;
    mod mcp;
    mod mentions;
    mod multiprocess;
    mod operations;
    mod repo_config;
    mod review_context;
    mod reviews;
    mod run;
    mod shutdown;
    mod webhook_restart;
    mod webhooks;
    mod workers;
}
