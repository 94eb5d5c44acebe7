//! The GitHub App's work: the review and mention jobs ([`handlers`]), the GitHub tools their
//! agent gets ([`github_tools`]), the review context a prompt is built from ([`context`]), a
//! repository's `.kodiai.yml` ([`repo_config`]), the App's client ([`client`]) and the manifest
//! that creates the App ([`app_manifest`]).
//!
//! Webhooks become jobs in the server's ingress; the workers of `kodiai-runtime` run them
//! through the handlers registered here ([`handlers::for_config`]).

pub mod app_manifest;
pub mod client;
pub mod context;
pub mod github_tools;
pub mod handlers;
pub mod repo_config;
