//! GitHub: App authentication, the REST and GraphQL client with its per-installation governor,
//! webhook signature verification and the typed events kodiai routes.

pub mod events;
pub mod mention;
pub mod webhook;
