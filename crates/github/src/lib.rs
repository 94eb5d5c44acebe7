//! GitHub: App authentication, the REST and GraphQL client with its per-installation governor,
//! webhook signature verification and the typed events kodiai routes.

pub mod auth;
pub mod client;
pub mod contents;
pub mod diff;
pub mod events;
pub mod governor;
pub mod markdown;
pub mod mention;
pub mod permissions;
pub mod rest;
pub mod review;
pub mod sanitize;
pub mod webhook;
