//! Integration tests of what test-support ships, driven through kodiai's own code: the MCP test
//! server binary (`kodiai-test-mcp`, found through `CARGO_BIN_EXE_…`, which only this crate's
//! tests get) against the agent's MCP client and loop.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod suite {
    mod mcp;
}
