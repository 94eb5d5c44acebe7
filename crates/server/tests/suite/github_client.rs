//! The GitHub client as the server builds it from its configuration, against the fake GitHub.

use kodiai_runtime::config::{Config, Env};
use kodiai_test_support::github::{FakeGithub, TEST_APP_ID, test_app_key};

fn env(fake: &FakeGithub, pairs: &[(&str, String)]) -> Env {
    let mut env: Env = fake
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    for (k, v) in pairs {
        env.insert((*k).to_owned(), v.clone());
    }
    env
}

#[tokio::test]
async fn the_app_key_is_read_from_pem_text_or_a_path() {
    let fake = FakeGithub::start().await;
    fake.app_id(TEST_APP_ID);
    let pem = test_app_key().private_pem.clone();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.pem");
    std::fs::write(&path, &pem).unwrap();
    let variants = [
        pem.replace('\n', "\\n"),
        pem.clone(),
        path.display().to_string(),
    ];
    for (i, key) in variants.into_iter().enumerate() {
        let config = Config::from_sources(
            None,
            &env(
                &fake,
                &[
                    ("GITHUB_APP_ID", TEST_APP_ID.to_string()),
                    ("GITHUB_PRIVATE_KEY", key),
                ],
            ),
        )
        .unwrap();
        let client = kodiai_github_app::client::build_client(&config.github)
            .unwrap()
            .expect("App mode");
        assert!(client.is_app());
        let installation = 100 + i as u64;
        client
            .installation(Some(installation))
            .get_repository("o", "r")
            .await
            .unwrap();
        assert_eq!(
            fake.requests_to(
                "POST",
                &format!("/app/installations/{installation}/access_tokens")
            )
            .len(),
            1
        );
    }
}

#[tokio::test]
async fn personal_token_mode_uses_github_token() {
    let fake = FakeGithub::start().await;
    fake.accept_token("ghp_fromenv");
    let config = Config::from_sources(
        None,
        &env(&fake, &[("GITHUB_TOKEN", "ghp_fromenv".to_owned())]),
    )
    .unwrap();
    let client = kodiai_github_app::client::build_client(&config.github)
        .unwrap()
        .unwrap();
    let repo = client
        .installation(None)
        .get_repository("o", "r")
        .await
        .unwrap();
    assert_eq!(repo.full_name, "o/r");
    assert_eq!(fake.tokens_issued(), 0);
}
