//! `POST /webhooks/github` through the real server on both backends: signatures (GitHub's
//! documented test vector, flipped bits, missing and SHA-1-only headers), duplicates, the body
//! limit, unknown events and `ping`, every fixture routed, bots and kodiai's own events, and the
//! deliveries API with replay.

use std::collections::BTreeMap;

use crate::suite::harness::{TestApp, TestAppBuilder};
use kodiai_protocol::{
    Delivery as StoredDelivery, DeliveryDetail, DeliveryOutcome, Job, JobEventKind, Page,
    WebhookAck,
};
use kodiai_store::{Signal, Store};
use kodiai_test_support::expect_error;
use kodiai_test_support::webhooks::{
    Delivery, every_fixture, fixture, fixtures_dir, shared_fixtures_dir, signature,
};
use serde_json::{Value, json};

const TOKEN: &str = "webhook-tests-admin-token";
const VECTOR_SECRET: &str = "It's a Secret to Everybody";
const VECTOR_SIGNATURE: &str =
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

async fn app(builder: TestAppBuilder) -> Option<TestApp> {
    builder
        .env("KODIAI_ADMIN_TOKEN", TOKEN)
        .env("KODIAI_WORKERS", "0")
        .env("GITHUB_APP_SLUG", "kodiai")
        .spawn()
        .await
}

async fn ack(response: reqwest::Response, status: u16) -> WebhookAck {
    let got = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn admin_get<T: serde::de::DeserializeOwned>(app: &TestApp, path: &str) -> T {
    let response = app
        .client
        .get(app.url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{path}: {text}");
    serde_json::from_str(&text).unwrap()
}

async fn job_count(store: &Store) -> i64 {
    store
        .job_counts()
        .await
        .unwrap()
        .iter()
        .map(|(_, _, n)| n)
        .sum()
}

fn comment(body: &str, login: &str, kind: &str) -> Value {
    let mut payload = fixture("issue_comment/created.payload.json");
    payload["comment"]["body"] = json!(body);
    for at in ["/comment/user", "/sender"] {
        let user = payload.pointer_mut(at).unwrap();
        user["login"] = json!(login);
        user["type"] = json!(kind);
    }
    payload
}

app_test!(
    githubs_test_vector_verifies_and_any_flipped_bit_is_refused_with_nothing_stored,
    builder | builder | {
        let Some(app) = app(builder.env("GITHUB_WEBHOOK_SECRET", VECTOR_SECRET)).await else {
            return;
        };
        let store = app.state().store.clone();

        // The documented vector passes the signature check; its body is then no JSON (400).
        let vector = Delivery {
            signature: Some(VECTOR_SIGNATURE.to_owned()),
            ..Delivery::raw("ping", b"Hello, World!".to_vec())
        };
        let body = expect_error(app.send_delivery(&vector).await, 400, "bad_request").await;
        assert!(body.message.contains("not JSON"), "{}", body.message);

        let payload = serde_json::to_vec(&fixture("pull_request/opened.payload.json")).unwrap();
        let signed = Delivery {
            signature: Some(signature(VECTOR_SECRET, &payload)),
            ..Delivery::raw("pull_request", payload.clone())
        };
        let mut refused = Vec::new();
        for bit in [0, 7, 8 * 100 + 3, payload.len() * 8 - 1] {
            let mut flipped = signed.clone();
            flipped.body[bit / 8] ^= 1 << (bit % 8);
            refused.push(flipped);
        }
        let hex = signed.signature.clone().unwrap();
        for position in ["sha256=".len(), hex.len() - 1] {
            let mut flipped = signed.clone();
            let mut bytes = hex.clone().into_bytes();
            bytes[position] = if bytes[position] == b'0' { b'1' } else { b'0' };
            flipped.signature = Some(String::from_utf8(bytes).unwrap());
            refused.push(flipped);
        }
        refused.push(Delivery {
            signature: None,
            ..signed.clone()
        });
        refused.push(Delivery {
            signature: Some(signature("another secret", &payload)),
            ..signed.clone()
        });
        for delivery in &refused {
            let body = expect_error(app.send_delivery(delivery).await, 401, "unauthorized").await;
            assert!(!body.message.contains(VECTOR_SECRET));
        }
        // The SHA-1 header alone is not enough.
        let sha1_only = app
            .client
            .post(app.url("/webhooks/github"))
            .header("x-github-event", "pull_request")
            .header("x-github-delivery", "sha1-only")
            .header(
                "x-hub-signature",
                "sha1=0000000000000000000000000000000000000000",
            )
            .body(payload.clone())
            .send()
            .await
            .unwrap();
        expect_error(sha1_only, 401, "unauthorized").await;
        assert_eq!(store.delivery_count().await.unwrap(), 0, "nothing stored");
        assert_eq!(job_count(&store).await, 0);

        let outcome = ack(app.send_delivery(&signed).await, 202).await.outcome;
        assert!(
            matches!(outcome, DeliveryOutcome::Job { .. }),
            "{outcome:?}"
        );
        assert_eq!(store.delivery_count().await.unwrap(), 1);
    }
);

app_test!(
    without_a_secret_every_delivery_is_refused,
    builder | builder | {
        let Some(app) = app(builder.env("GITHUB_WEBHOOK_SECRET", "")).await else {
            return;
        };
        let response = app.send_webhook("ping", &json!({"zen": "hi"})).await;
        let body = expect_error(response, 401, "unauthorized").await;
        assert!(
            body.message.contains("GITHUB_WEBHOOK_SECRET"),
            "{}",
            body.message
        );
        assert_eq!(app.state().store.delivery_count().await.unwrap(), 0);
    }
);

app_test!(
    a_rotated_out_secret_still_verifies,
    builder | builder | {
        let Some(app) = app(builder
            .env("GITHUB_WEBHOOK_SECRET", "the-new-secret")
            .env("GITHUB_WEBHOOK_SECRETS", "old-secret-1, old-secret-2"))
        .await
        else {
            return;
        };
        for secret in ["the-new-secret", "old-secret-2"] {
            let body = br#"{"zen": "rotate"}"#.to_vec();
            let delivery = Delivery {
                signature: Some(signature(secret, &body)),
                ..Delivery::raw("ping", body)
            };
            ack(app.send_delivery(&delivery).await, 200).await;
        }
    }
);

app_test!(
    deliveries_sent_at_once_are_all_stored_and_one_bad_one_fails_alone,
    builder | builder | {
        let Some(app) = app(builder).await else {
            return;
        };
        let store = app.state().store.clone();
        // Sent at once, these are stored in groups of one transaction; the repeated ids must
        // still come out as duplicates, each 202 must mean "stored", and on PostgreSQL a
        // payload it cannot store (`\u0000` is valid JSON but not valid JSONB) must fail only
        // its own request, not the others of its group.
        let payload = fixture("pull_request/opened.payload.json");
        let unique: Vec<Delivery> = (0..40)
            .map(|_| Delivery::new("pull_request", &payload))
            .collect();
        let mut poisoned = payload.clone();
        poisoned["pull_request"]["body"] = json!("nul \u{0000} here");
        let poisoned = Delivery::new("pull_request", &poisoned);
        let sends = unique
            .iter()
            .chain(unique.iter().take(10))
            .chain(std::iter::once(&poisoned))
            .map(|d| app.send_delivery(d));
        let answers = futures::future::join_all(sends).await;
        let mut statuses = BTreeMap::<u16, usize>::new();
        let mut duplicates = 0;
        for (i, response) in answers.into_iter().enumerate() {
            let status = response.status().as_u16();
            *statuses.entry(status).or_default() += 1;
            if status == 202 && i < 50 {
                let ack: WebhookAck = response.json().await.unwrap();
                duplicates += usize::from(ack.outcome == DeliveryOutcome::Duplicate);
            }
        }
        let postgres = store.backend() == kodiai_store::Backend::Postgres;
        let stored_ok = if postgres { 50 } else { 51 };
        assert_eq!(statuses.get(&202), Some(&stored_ok), "{statuses:?}");
        assert_eq!(
            statuses.get(&500).copied().unwrap_or(0),
            51 - stored_ok,
            "{statuses:?}"
        );
        assert_eq!(duplicates, 10);
        let stored = if postgres { 40 } else { 41 };
        assert_eq!(store.delivery_count().await.unwrap(), stored);
        assert_eq!(job_count(&store).await, stored);
    }
);

app_test!(
    the_same_delivery_twice_makes_one_job,
    builder | builder | {
        let Some(app) = app(builder).await else {
            return;
        };
        let store = app.state().store.clone();
        let delivery = Delivery::new("pull_request", &fixture("pull_request/opened.payload.json"));
        let first = ack(app.send_delivery(&delivery).await, 202).await;
        let DeliveryOutcome::Job { job_id } = &first.outcome else {
            panic!("{first:?}");
        };
        let second = ack(app.send_delivery(&delivery).await, 202).await;
        assert_eq!(second.outcome, DeliveryOutcome::Duplicate);
        assert_eq!(second.delivery_id, delivery.delivery_id);
        assert_eq!(job_count(&store).await, 1);

        let detail: DeliveryDetail = admin_get(
            &app,
            &format!("/api/v1/deliveries/{}", delivery.delivery_id),
        )
        .await;
        assert_eq!(detail.delivery.duplicates, 1);
        assert_eq!(detail.jobs, vec![job_id.clone()]);
        // The job's JSON carries its delivery id, as a column and in its payload.
        let job: Job = admin_get(&app, &format!("/api/v1/jobs/{job_id}")).await;
        assert_eq!(job.kind, "review");
        assert_eq!(
            job.delivery_id.as_deref(),
            Some(delivery.delivery_id.as_str())
        );
        assert_eq!(job.payload["delivery_id"], delivery.delivery_id);
        assert_eq!(job.installation_id, Some(1));
        assert_eq!(job.concurrency_key.as_deref(), Some("installation:1"));
    }
);

app_test!(
    unknown_events_are_stored_and_ignored_and_ping_is_answered,
    builder | builder | {
        let Some(app) = app(builder).await else {
            return;
        };
        let star = ack(
            app.send_webhook(
                "star",
                &json!({"action": "created", "sender": {"login": "a", "id": 1}}),
            )
            .await,
            202,
        )
        .await;
        assert_eq!(
            star.outcome,
            DeliveryOutcome::Ignored {
                reason: "event star is not routed".into()
            }
        );
        let ping = ack(
            app.send_webhook("ping", &json!({"zen": "Keep it simple.", "hook_id": 9}))
                .await,
            200,
        )
        .await;
        assert_eq!(
            ping.outcome,
            DeliveryOutcome::Ignored {
                reason: "ping: the webhook 9 is set up".into()
            }
        );
        let page: Page<StoredDelivery> = admin_get(&app, "/api/v1/deliveries?event=star").await;
        assert_eq!(page.data.len(), 1);
        assert_eq!(page.data[0].action.as_deref(), Some("created"));
        assert_eq!(page.data[0].sender.as_deref(), Some("a"));
        assert_eq!(job_count(&app.state().store).await, 0);

        // Headers a signed delivery still needs.
        let mut missing = Delivery::new("ping", &json!({}));
        missing.event = "Not An Event".into();
        expect_error(app.send_delivery(&missing).await, 400, "bad_request").await;
        let missing_id = Delivery {
            delivery_id: String::new(),
            ..Delivery::new("ping", &json!({}))
        };
        expect_error(app.send_delivery(&missing_id).await, 400, "bad_request").await;
    }
);

app_test!(
    form_encoded_deliveries_are_read_too,
    builder | builder | {
        let Some(app) = app(builder).await else {
            return;
        };
        let json = serde_json::to_string(&fixture("push/payload.json")).unwrap();
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &json)
            .finish();
        let delivery = Delivery {
            content_type: "application/x-www-form-urlencoded",
            ..Delivery::raw("push", body.into_bytes())
        };
        let outcome = ack(app.send_delivery(&delivery).await, 202).await.outcome;
        assert!(
            matches!(outcome, DeliveryOutcome::Recorded { .. }),
            "{outcome:?}"
        );
    }
);

app_test!(
    the_webhook_takes_githubs_25_mib_and_no_more,
    builder | builder | {
        let Some(app) = app(builder).await else {
            return;
        };
        // Over the API's 2 MiB default, under GitHub's cap.
        let mut payload = fixture("pull_request/opened.payload.json");
        payload["pull_request"]["body"] = json!("x".repeat(3 * 1024 * 1024));
        ack(app.send_webhook("pull_request", &payload).await, 202).await;

        let too_big = Delivery::raw("pull_request", vec![b' '; 25 * 1024 * 1024 + 1]);
        expect_error(app.send_delivery(&too_big).await, 413, "payload_too_large").await;
        assert_eq!(app.state().store.delivery_count().await.unwrap(), 1);
    }
);

/// What a fixture's outcome is stored as: `job:<kind>`, `recorded` or `ignored`.
fn label(outcome: &DeliveryOutcome, jobs: &BTreeMap<String, String>) -> String {
    match outcome {
        DeliveryOutcome::Job { job_id } => format!("job:{}", jobs[job_id]),
        DeliveryOutcome::Recorded { .. } => "recorded".into(),
        DeliveryOutcome::Ignored { .. } => "ignored".into(),
        DeliveryOutcome::Duplicate => "duplicate".into(),
    }
}

/// Sends every payload of the fixtures folder `dir` as its exact bytes, signed, as GitHub would
/// send them; how many, and how many of each (event, outcome).
async fn send_every_fixture(
    app: &TestApp,
    dir: &std::path::Path,
) -> (usize, BTreeMap<(String, String), u32>) {
    let store = app.state().store.clone();
    let mut counts: BTreeMap<(String, String), u32> = BTreeMap::new();
    let all = every_fixture(dir);
    for (event, _, body) in &all {
        let response = app.send_delivery(&Delivery::raw(event, body.clone())).await;
        let outcome = ack(response, 202).await.outcome;
        let jobs: BTreeMap<String, String> = match &outcome {
            DeliveryOutcome::Job { job_id } => {
                let job = store.job(job_id).await.unwrap().unwrap();
                BTreeMap::from([(job_id.clone(), job.kind)])
            }
            _ => BTreeMap::new(),
        };
        *counts
            .entry((event.clone(), label(&outcome, &jobs)))
            .or_default() += 1;
    }
    (all.len(), counts)
}

fn counts_of(expected: &[(&str, &str, u32)]) -> BTreeMap<(String, String), u32> {
    expected
        .iter()
        .map(|(e, o, n)| ((e.to_string(), o.to_string()), *n))
        .collect()
}

/// installation/created registered its account and repository, then later deliveries
/// (deleted, suspend, …) of the same installation updated it.
async fn assert_installation_registered(app: &TestApp) {
    let store = app.state().store.clone();
    assert!(store.installation(957387).await.unwrap().is_some());
    let repositories = store.repositories().await.unwrap();
    assert!(
        repositories
            .iter()
            .any(|r| r.full_name == "Codertocat/Hello-World"),
        "{repositories:?}"
    );
}

app_test!(
    every_fixture_is_stored_and_routed_and_installations_are_registered,
    builder | builder | {
        let Some(app) = app(builder).await else {
            return;
        };
        let (files, counts) = send_every_fixture(&app, &fixtures_dir()).await;
        assert_eq!(files, 32);
        let expected = counts_of(&[
            ("check_suite", "recorded", 2),
            ("installation", "recorded", 5),
            ("installation_repositories", "recorded", 2),
            ("issue_comment", "ignored", 4),
            ("issues", "ignored", 4),
            ("pull_request", "ignored", 1),
            ("pull_request", "job:review", 5),
            ("pull_request_review", "ignored", 2),
            ("pull_request_review_comment", "ignored", 3),
            ("push", "recorded", 2),
            ("workflow_run", "recorded", 2),
        ]);
        assert_eq!(counts, expected);
        assert_installation_registered(&app).await;
    }
);

app_test!(
    every_shared_fixture_is_stored_and_routed_and_installations_are_registered,
    builder | builder | {
        // octokit's 97 examples, where `../shared` lies beside the repository.
        let Some(dir) = shared_fixtures_dir() else {
            eprintln!("skipped: no ../shared/fixtures/github-webhooks beside the repository");
            return;
        };
        let Some(app) = app(builder).await else {
            return;
        };
        let (files, counts) = send_every_fixture(&app, &dir).await;
        assert_eq!(files, 97);
        let expected = counts_of(&[
            ("check_suite", "recorded", 8),
            ("installation", "recorded", 6),
            ("installation_repositories", "recorded", 2),
            ("issue_comment", "ignored", 8),
            ("issues", "ignored", 28),
            ("pull_request", "ignored", 19),
            ("pull_request", "job:review", 9),
            ("pull_request_review", "ignored", 3),
            ("pull_request_review_comment", "ignored", 4),
            ("push", "recorded", 6),
            ("workflow_run", "recorded", 4),
        ]);
        assert_eq!(counts, expected);
        assert_installation_registered(&app).await;
    }
);

app_test!(
    bots_and_kodiais_own_events_make_no_job_and_a_mention_runs_its_job,
    builder | builder | {
        // The mention's job asks GitHub for the sender's permission: a fake, in token mode.
        let github = kodiai_test_support::github::FakeGithub::start().await;
        github
            .accept_token("webhook-tests-github-token")
            .add_repo("Codertocat/Hello-World", "main")
            .set_permission("Codertocat/Hello-World", "octocat", "write");
        let Some(app) = builder
            .env("GITHUB_TOKEN", "webhook-tests-github-token")
            .env("GITHUB_API_URL", &github.api_url())
            .env("KODIAI_ADMIN_TOKEN", TOKEN)
            .env("GITHUB_APP_SLUG", "kodiai")
            .spawn()
            .await
        else {
            return;
        };
        let store = app.state().store.clone();
        for (login, kind) in [("kodiai[bot]", "Bot"), ("dependabot[bot]", "Bot")] {
            let outcome = ack(
                app.send_webhook("issue_comment", &comment("@kodiai fix it", login, kind))
                    .await,
                202,
            )
            .await
            .outcome;
            assert!(
                matches!(outcome, DeliveryOutcome::Ignored { .. }),
                "{login}: {outcome:?}"
            );
        }
        let mut edited = comment("@kodiai fix it", "octocat", "User");
        edited["action"] = json!("edited");
        ack(app.send_webhook("issue_comment", &edited).await, 202).await;
        assert_eq!(job_count(&store).await, 0);

        let mut signals = store.subscribe().await.unwrap();
        let outcome = ack(
            app.send_webhook(
                "issue_comment",
                &comment("@kodiai what does this do?", "octocat", "User"),
            )
            .await,
            202,
        )
        .await
        .outcome;
        let DeliveryOutcome::Job { job_id } = outcome else {
            panic!("{outcome:?}");
        };
        // The server's own workers run it; wait for its `finished` event.
        loop {
            match signals.recv().await {
                Signal::JobEvent {
                    job_id: id,
                    kind: JobEventKind::Finished,
                    ..
                } if id == job_id => {
                    break;
                }
                // Signals were lost: look at the job itself.
                Signal::Resync if store.job(&job_id).await.unwrap().unwrap().state.is_final() => {
                    break;
                }
                _ => {}
            }
        }
        // Past its gate the job goes on to the work, which this test gives nothing to work
        // with (the fake has no such issue): the gate's log line says it let the sender in.
        let job = store.job(&job_id).await.unwrap().unwrap();
        assert!(job.state.is_final(), "{job:?}");
        let events = store.events_after(&job_id, 0, 1000).await.unwrap();
        let messages: Vec<&str> = events
            .iter()
            .filter_map(|e| e.data["message"].as_str())
            .collect();
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with("octocat (write) asked @kodiai")),
            "{messages:?}"
        );
        assert_eq!(job.payload["request"], "what does this do?");
    }
);

app_test!(
    deliveries_api_lists_shows_and_replays,
    builder | builder | {
        let Some(app) = app(builder).await else {
            return;
        };
        let store = app.state().store.clone();
        let review = Delivery::new("pull_request", &fixture("pull_request/opened.payload.json"));
        ack(app.send_delivery(&review).await, 202).await;
        ack(
            app.send_webhook("push", &fixture("push/payload.json"))
                .await,
            202,
        )
        .await;

        let page: Page<StoredDelivery> = admin_get(&app, "/api/v1/deliveries").await;
        assert_eq!(page.data.len(), 2);
        let jobs_only: Page<StoredDelivery> =
            admin_get(&app, "/api/v1/deliveries?outcome=job&limit=1").await;
        assert_eq!(jobs_only.data.len(), 1);
        assert_eq!(jobs_only.data[0].delivery_id, review.delivery_id);
        assert_eq!(
            jobs_only.data[0].repository.as_deref(),
            Some("Codertocat/Hello-World")
        );
        assert_eq!(jobs_only.data[0].installation_id, Some(1));
        assert_eq!(jobs_only.next_cursor, None);
        let first: Page<StoredDelivery> = admin_get(&app, "/api/v1/deliveries?limit=1").await;
        let cursor = first.next_cursor.unwrap();
        let second: Page<StoredDelivery> =
            admin_get(&app, &format!("/api/v1/deliveries?limit=1&cursor={cursor}")).await;
        assert_ne!(first.data[0].delivery_id, second.data[0].delivery_id);

        let path = format!("/api/v1/deliveries/{}", review.delivery_id);
        let detail: DeliveryDetail = admin_get(&app, &path).await;
        assert_eq!(detail.payload, fixture("pull_request/opened.payload.json"));
        assert_eq!(detail.delivery.event, "pull_request");

        let replay = app
            .client
            .post(app.url(&format!("{path}/replay")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let replayed = ack(replay, 202).await;
        let DeliveryOutcome::Job { job_id } = replayed.outcome else {
            panic!("{replayed:?}");
        };
        assert!(!detail.jobs.contains(&job_id), "a new job");
        let detail: DeliveryDetail = admin_get(&app, &path).await;
        assert_eq!(detail.jobs.len(), 2);
        assert_eq!(detail.delivery.replays, 1);
        assert_eq!(job_count(&store).await, 2);

        // Errors: no token, no such delivery, bad filters.
        let anonymous = app
            .client
            .get(app.url("/api/v1/deliveries"))
            .send()
            .await
            .unwrap();
        expect_error(anonymous, 401, "unauthorized").await;
        let missing = app
            .client
            .post(app.url("/api/v1/deliveries/nope/replay"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        expect_error(missing, 404, "not_found").await;
        for (query, status, code) in [
            ("outcome=done", 422, "unprocessable"),
            ("limit=0", 422, "unprocessable"),
            ("cursor=zzz", 400, "bad_request"),
            ("colour=red", 422, "unprocessable"),
        ] {
            let response = app
                .client
                .get(app.url(&format!("/api/v1/deliveries?{query}")))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            expect_error(response, status, code).await;
        }
    }
);
