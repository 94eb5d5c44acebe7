//! kodiai-llm against fakes of the three APIs (`kodiai_test_support::llm`): real HTTP on
//! loopback, real SSE, scripted answers. Each behaviour is one test body run per provider.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod suite {
    mod common;
    mod providers;
    mod requests;
}
