use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use kodiai_github::client::{Error, GithubClient};
use kodiai_test_support::github::{FakeGithub, Scripted, test_app_key};
use secrecy::SecretString;
use serde::Deserialize;

use super::*;

#[derive(Deserialize)]
struct Claims {
    iat: u64,
    exp: u64,
    iss: String,
}

#[tokio::test(start_paused = true)]
async fn app_jwt_is_exchanged_once_for_concurrent_calls_and_again_before_expiry() {
    let fake = FakeGithub::start().await;
    let client = app_client(&fake, options(&fake));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let c = client.installation(Some(INSTALLATION));
        tasks.spawn(async move { c.get_repository("o", "r").await });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().unwrap().default_branch, "main");
    }
    assert_eq!(fake.tokens_issued(), 1, "one refresh at a time");

    // The JWT: RS256 under the App's key, iss = App id, iat a minute back, exp under 10 min.
    let exchange = fake.requests_to("POST", "/app/installations/7/access_tokens");
    assert_eq!(exchange.len(), 1);
    let jwt = exchange[0]
        .header("authorization")
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap();
    let key = DecodingKey::from_rsa_pem(test_app_key().public_pem.as_bytes()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[APP_ID.to_string()]);
    validation.set_required_spec_claims(&["exp", "iat", "iss"]);
    let claims = jsonwebtoken::decode::<Claims>(jwt, &key, &validation)
        .expect("signed with the App key")
        .claims;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(claims.iss, APP_ID.to_string());
    assert!(
        claims.iat + 59 <= now && claims.iat + 65 >= now,
        "iat {} now {now}",
        claims.iat
    );
    assert!(
        claims.exp > now && claims.exp - now < 600,
        "exp {} now {now}",
        claims.exp
    );

    // API calls carry the installation token, never the JWT.
    let api_calls = fake.requests_to("GET", "/repos/o/r");
    assert_eq!(api_calls.len(), 10);
    for r in &api_calls {
        assert_eq!(r.header("authorization"), Some("Bearer ghs_fake7x1"));
    }

    // 54 minutes on, the token is still used; past 55 (five minutes before its hour), replaced.
    tokio::time::advance(Duration::from_secs(54 * 60)).await;
    client
        .installation(Some(INSTALLATION))
        .get_repository("o", "r")
        .await
        .unwrap();
    assert_eq!(fake.tokens_issued(), 1);
    tokio::time::advance(Duration::from_secs(61)).await;
    client
        .installation(Some(INSTALLATION))
        .get_repository("o", "r")
        .await
        .unwrap();
    assert_eq!(fake.tokens_issued(), 2);
    let last = fake.requests().into_iter().last().unwrap();
    assert_eq!(last.header("authorization"), Some("Bearer ghs_fake7x2"));
}

#[tokio::test(start_paused = true)]
async fn installations_get_their_own_tokens() {
    let fake = FakeGithub::start().await;
    let client = app_client(&fake, options(&fake));
    client
        .installation(Some(1))
        .get_repository("a", "r")
        .await
        .unwrap();
    client
        .installation(Some(2))
        .get_repository("b", "r")
        .await
        .unwrap();
    client
        .installation(Some(1))
        .get_repository("a", "r")
        .await
        .unwrap();
    assert_eq!(fake.tokens_issued(), 2);
    assert_eq!(
        fake.requests_to("POST", "/app/installations/2/access_tokens")
            .len(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_revoked_installation_token_is_replaced_once() {
    let fake = FakeGithub::start().await;
    let client = installation(&fake);
    client.get_repository("o", "r").await.unwrap();
    fake.script(
        Scripted::new("GET", "/repos/o/r", 401)
            .json(serde_json::json!({"message": "Bad credentials"})),
    );
    client.get_repository("o", "r").await.unwrap();
    assert_eq!(fake.tokens_issued(), 2);
    // A 401 that persists is an error, not a loop.
    fake.script(Scripted::new("GET", "/repos/o/r", 401).times(5));
    let err = client.get_repository("o", "r").await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert_eq!(fake.tokens_issued(), 3);
}

#[tokio::test(start_paused = true)]
async fn an_app_call_needs_an_installation() {
    let fake = FakeGithub::start().await;
    let client = app_client(&fake, options(&fake));
    let err = client
        .installation(None)
        .get_repository("o", "r")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoInstallation), "{err:?}");
    assert!(fake.requests().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_wrong_app_id_is_refused_by_github() {
    let fake = FakeGithub::start().await;
    fake.app_id(1);
    let key = SecretString::from(test_app_key().private_pem.clone());
    let client = GithubClient::app(99, &key, options(&fake)).unwrap();
    let err = client
        .installation(Some(3))
        .get_repository("o", "r")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    assert!(!err.is_transient());
}

#[tokio::test(start_paused = true)]
async fn personal_token_mode_sends_the_token_and_never_exchanges() {
    let fake = FakeGithub::start().await;
    let client = pat_client(&fake, options(&fake));
    client.get_repository("o", "r").await.unwrap();
    assert_eq!(fake.tokens_issued(), 0);
    let r = &fake.requests_to("GET", "/repos/o/r")[0];
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {PAT}").as_str())
    );
    assert_eq!(r.header("x-github-api-version"), Some("2022-11-28"));
    assert!(r.header("user-agent").unwrap().starts_with("kodiai/"));
}

#[tokio::test(start_paused = true)]
async fn tokens_appear_in_no_error_and_no_debug_output() {
    let fake = FakeGithub::start().await;
    let secret = "ghp_wrongbutsecret123";
    let client =
        GithubClient::personal_token(SecretString::from(secret.to_owned()), options(&fake))
            .unwrap();
    let err = client
        .installation(None)
        .get_repository("o", "r")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401));
    for shown in [err.to_string(), format!("{err:?}"), format!("{client:?}")] {
        assert!(!shown.contains(secret), "{shown}");
    }
    let app = installation(&fake);
    app.get_repository("o", "r").await.unwrap();
    let shown = format!("{app:?}");
    assert!(
        !shown.contains("ghs_fake") && !shown.contains("PRIVATE KEY"),
        "{shown}"
    );
}
