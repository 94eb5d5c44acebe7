//! Integration tests of `kodiai-github` against the fake GitHub of `kodiai-test-support`: the
//! real client over real HTTP, with tokio's clock paused wherever time matters.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failure is a test failure"
)]

mod suite {
    mod auth;
    mod contents;
    mod diff;
    mod governor;
    mod outgoing;
    mod permissions;
    mod rest;
    mod retries;
    mod review;

    use kodiai_github::client::{ClientOptions, GithubClient, InstallationClient};
    use kodiai_test_support::github::{FakeGithub, test_app_key};
    use secrecy::SecretString;
    use url::Url;

    pub const APP_ID: u64 = 4242;
    pub const INSTALLATION: u64 = 7;
    pub const PAT: &str = "ghp_personaltesttoken";

    pub fn options(fake: &FakeGithub) -> ClientOptions {
        ClientOptions::new(
            Url::parse(&fake.api_url()).unwrap(),
            Url::parse(&fake.graphql_url()).unwrap(),
        )
    }

    /// An App client (test key) against the fake, which only accepts this App's JWTs.
    pub fn app_client(fake: &FakeGithub, options: ClientOptions) -> GithubClient {
        fake.app_id(APP_ID);
        let key = SecretString::from(test_app_key().private_pem.clone());
        GithubClient::app(APP_ID, &key, options).unwrap()
    }

    /// The installation client most tests use.
    pub fn installation(fake: &FakeGithub) -> InstallationClient {
        app_client(fake, options(fake)).installation(Some(INSTALLATION))
    }

    /// A personal-token client against the fake.
    pub fn pat_client(fake: &FakeGithub, options: ClientOptions) -> InstallationClient {
        fake.accept_token(PAT);
        GithubClient::personal_token(SecretString::from(PAT.to_owned()), options)
            .unwrap()
            .installation(None)
    }
}
