//! Integration tests of the agent engine: the loop through the real providers against the
//! fake model APIs of `kodiai-test-support`, over real sockets, with the real workspace tools on
//! temporary directories.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod suite {
    mod agent_loop;
    mod cli_backends;
    mod tool_socket;
}
