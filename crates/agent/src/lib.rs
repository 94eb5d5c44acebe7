//! The agent engine: the loop, its tools and their confinement to a workspace, the MCP client,
//! the CLI backends, and the git workspaces (mirrors and worktrees) jobs run in.
//!
//! Architecture Invariant: nothing here knows GitHub, HTTP serving or the database.

pub mod agent;
pub mod backends;
pub mod mcp;
pub mod tools;
pub mod workspace;

pub use agent::{AgentRun, Limits, RunOutcome, Task, start};
