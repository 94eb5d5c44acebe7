//! The jobs API (`/api/v1/jobs…`): admin-token auth, list filters and pages, one job with its
//! events, cancel and retry (of queued and of running jobs), and the live event stream read
//! with a real SSE client. Jobs are put in place through the server's own store, as the webhook
//! and the other APIs will.

use std::collections::HashSet;

use crate::suite::harness::{TestApp, TestAppBuilder};
use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};
use kodiai_protocol::{
    Job, JobDetail, JobEvent, JobEventKind, JobKind, JobSpec, JobState, NoopJob,
};
use kodiai_runtime::jobs::{Handlers, JobContext};
use kodiai_store::{NewJob, Transition};
use kodiai_test_support::expect_error;
use serde_json::{Value, json};

const TOKEN: &str = "s3cret-admin-token-for-tests";

/// A server with the admin token set and no workers, so queued jobs stay queued.
async fn idle_app(builder: TestAppBuilder) -> Option<TestApp> {
    builder
        .env("KODIAI_ADMIN_TOKEN", TOKEN)
        .env("KODIAI_WORKERS", "0")
        .spawn()
        .await
}

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
}

async fn post(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
}

async fn ok_json<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> T {
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn enqueue(app: &TestApp, label: &str, key: Option<&str>) -> String {
    let mut job = NewJob::new(JobSpec::Noop(NoopJob {
        label: Some(label.into()),
    }));
    if let Some(key) = key {
        job = job.concurrency_key(key);
    }
    let state = app.state();
    state
        .store
        .enqueue(&job, state.clock.now())
        .await
        .unwrap()
        .id
}

async fn record(app: &TestApp, id: &str, kind: JobEventKind, data: Value) -> JobEvent {
    let state = app.state();
    state
        .store
        .record_event(id, kind, data, state.clock.now())
        .await
        .unwrap()
        .unwrap()
}

/// The job's event stream, opened and checked to be SSE.
async fn open_events(
    app: &TestApp,
    id: &str,
    last_event_id: Option<&str>,
) -> impl Stream<Item = eventsource_stream::Event> + Unpin + use<> {
    let mut request = app
        .client
        .get(app.url(&format!("/api/v1/jobs/{id}/events")))
        .bearer_auth(TOKEN);
    if let Some(last) = last_event_id {
        request = request.header("last-event-id", last);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    // A transport error (the connection cut rather than the stream ended) fails the test.
    Box::pin(
        response
            .bytes_stream()
            .eventsource()
            .map(|event| event.expect("a well-formed SSE event on an open connection")),
    )
}

/// Checks an SSE event against the stored event it carries, and returns that.
fn job_event(sse: &eventsource_stream::Event) -> JobEvent {
    let event: JobEvent = serde_json::from_str(&sse.data).unwrap();
    assert_eq!(sse.id, event.seq.to_string());
    assert_eq!(sse.event, event.kind.as_str());
    event
}

/// Reads a stream to its end (the server ends it after the job's final event).
async fn read_to_end(
    stream: &mut (impl Stream<Item = eventsource_stream::Event> + Unpin),
) -> Vec<JobEvent> {
    let mut events = Vec::new();
    while let Some(sse) = stream.next().await {
        events.push(job_event(&sse));
    }
    events
}

fn kinds(events: &[JobEvent]) -> Vec<JobEventKind> {
    events.iter().map(|e| e.kind).collect()
}

const ROUTES: [(&str, &str); 5] = [
    ("GET", "/api/v1/jobs"),
    ("GET", "/api/v1/jobs/{id}"),
    ("GET", "/api/v1/jobs/{id}/events"),
    ("POST", "/api/v1/jobs/{id}/cancel"),
    ("POST", "/api/v1/jobs/{id}/retry"),
];

app_test!(
    every_route_needs_the_admin_token,
    builder | builder | {
        let Some(app) = idle_app(builder).await else {
            return;
        };
        let id = enqueue(&app, "a", None).await;
        for (method, route) in ROUTES {
            let url = app.url(&route.replace("{id}", &id));
            let request = |auth: Option<&str>| {
                let request = match method {
                    "GET" => app.client.get(&url),
                    _ => app.client.post(&url),
                };
                match auth {
                    Some(value) => request.header("authorization", value),
                    None => request,
                }
            };

            let response = request(None).send().await.unwrap();
            let challenge = response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(challenge.starts_with("Bearer"), "{challenge}");
            let body = expect_error(response, 401, "unauthorized").await;
            assert!(
                body.message.contains("Authorization: Bearer"),
                "{}",
                body.message
            );

            for wrong in [
                "Bearer not-the-token",
                "Bearer s3cret-admin-token-for-test",
                "Basic czNjcmV0OmFkbWlu",
                "Bearer",
            ] {
                let response = request(Some(wrong)).send().await.unwrap();
                assert!(response.headers().contains_key("www-authenticate"));
                let body = expect_error(response, 401, "unauthorized").await;
                assert!(!body.message.contains("not-the-token"), "{}", body.message);
                assert!(!body.message.contains(TOKEN), "{}", body.message);
            }

            // Auth comes first: a bad id from a stranger is 401, not 400.
            let bad = route.replace("{id}", "not-a-uuid");
            let response = match method {
                "GET" => app.client.get(app.url(&bad)),
                _ => app.client.post(app.url(&bad)),
            }
            .send()
            .await
            .unwrap();
            expect_error(response, 401, "unauthorized").await;
        }

        // The right token, in any case of the scheme name.
        for scheme in ["Bearer", "bearer"] {
            let response = app
                .client
                .get(app.url("/api/v1/jobs"))
                .header("authorization", format!("{scheme} {TOKEN}"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        }
        let response = get(&app, &format!("/api/v1/jobs/{id}")).await;
        assert_eq!(response.status(), 200);
    }
);

app_test!(
    without_an_admin_token_the_api_is_closed,
    builder | builder | {
        let Some(app) = builder.env("KODIAI_WORKERS", "0").spawn().await else {
            return;
        };
        for auth in [
            None,
            Some(format!("Bearer {TOKEN}")),
            Some("Bearer ".into()),
        ] {
            let mut request = app.client.get(app.url("/api/v1/jobs"));
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            let response = request.send().await.unwrap();
            assert!(response.headers().contains_key("www-authenticate"));
            let body = expect_error(response, 401, "unauthorized").await;
            assert!(
                body.message.contains("no KODIAI_ADMIN_TOKEN set"),
                "{}",
                body.message
            );
        }
    }
);

app_test!(
    lists_filter_by_kind_state_and_key,
    builder | builder | {
        let Some(app) = idle_app(builder).await else {
            return;
        };
        let mut ids = Vec::new();
        for (i, key) in [
            "installation:1",
            "installation:2",
            "installation:1",
            "installation:1",
        ]
        .into_iter()
        .enumerate()
        {
            ids.push(enqueue(&app, &format!("job {i}"), Some(key)).await);
        }
        ids.push(enqueue(&app, "no key", None).await);
        for id in [&ids[0], &ids[1]] {
            let cancelled: Job =
                ok_json(post(&app, &format!("/api/v1/jobs/{id}/cancel")).await).await;
            assert_eq!(cancelled.state, JobState::Cancelled);
        }
        let newest_first = |picked: &[usize]| -> Vec<String> {
            let mut picked: Vec<String> = picked.iter().map(|i| ids[*i].clone()).collect();
            picked.reverse();
            picked
        };
        let listed = |page: kodiai_protocol::Page<Job>| -> Vec<String> {
            assert_eq!(page.next_cursor, None);
            page.data.into_iter().map(|job| job.id).collect()
        };

        for (query, expected) in [
            ("", newest_first(&[0, 1, 2, 3, 4])),
            ("?kind=noop", newest_first(&[0, 1, 2, 3, 4])),
            ("?state=cancelled", newest_first(&[0, 1])),
            ("?state=queued", newest_first(&[2, 3, 4])),
            ("?state=succeeded", vec![]),
            ("?key=installation:1", newest_first(&[0, 2, 3])),
            ("?key=installation:1&state=queued", newest_first(&[2, 3])),
            (
                "?key=installation%3A2&kind=noop&state=cancelled",
                newest_first(&[1]),
            ),
            ("?key=nobody", vec![]),
            // Empty values count as absent, as HTML forms send them.
            (
                "?kind=&state=&key=&limit=&cursor=",
                newest_first(&[0, 1, 2, 3, 4]),
            ),
        ] {
            let page = ok_json(get(&app, &format!("/api/v1/jobs{query}")).await).await;
            assert_eq!(listed(page), expected, "{query}");
        }

        // The JSON shape of a page.
        let page: Value = ok_json(get(&app, "/api/v1/jobs?state=cancelled").await).await;
        assert_eq!(page["next_cursor"], Value::Null);
        assert_eq!(page["data"][0]["id"], ids[1].as_str());
        assert_eq!(page["data"][0]["state"], "cancelled");
        assert_eq!(page["data"][0]["error"]["reason"], "cancelled");
        assert_eq!(page["data"][0]["payload"], json!({"label": "job 1"}));
    }
);

app_test!(
    lists_page_with_limit_and_cursor,
    builder | builder | {
        let Some(app) = idle_app(builder).await else {
            return;
        };
        let mut ids = Vec::new();
        for i in 0..7 {
            ids.push(enqueue(&app, &format!("job {i}"), None).await);
        }
        ids.reverse();

        let mut seen = Vec::new();
        let mut pages = Vec::new();
        let mut path = "/api/v1/jobs?limit=3".to_owned();
        loop {
            let page: kodiai_protocol::Page<Job> = ok_json(get(&app, &path).await).await;
            pages.push(page.data.len());
            seen.extend(page.data.iter().map(|job| job.id.clone()));
            match page.next_cursor {
                Some(cursor) => {
                    assert_eq!(
                        Some(&cursor),
                        seen.last(),
                        "the cursor is the page's last id"
                    );
                    path = format!("/api/v1/jobs?limit=3&cursor={cursor}");
                }
                None => break,
            }
        }
        assert_eq!(pages, [3, 3, 1]);
        assert_eq!(seen, ids, "newest first, each job once");
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 7);

        // A page that ends exactly at the last job says so.
        let page: kodiai_protocol::Page<Job> =
            ok_json(get(&app, "/api/v1/jobs?limit=7").await).await;
        assert_eq!(page.data.len(), 7);
        assert_eq!(page.next_cursor, None);
        // A cursor in another spelling of the same UUID works the same.
        let upper = ids[2].to_uppercase();
        let page: kodiai_protocol::Page<Job> =
            ok_json(get(&app, &format!("/api/v1/jobs?limit=2&cursor={upper}")).await).await;
        let got: Vec<&str> = page.data.iter().map(|job| job.id.as_str()).collect();
        assert_eq!(got, [ids[3].as_str(), ids[4].as_str()]);
        // Filters and the cursor combine.
        let page: kodiai_protocol::Page<Job> = ok_json(
            get(
                &app,
                &format!("/api/v1/jobs?state=queued&limit=1000&cursor={}", ids[5]),
            )
            .await,
        )
        .await;
        assert_eq!(page.data.len(), 1);
        assert_eq!(page.data[0].id, ids[6]);
    }
);

app_test!(
    bad_list_queries_are_json_errors,
    builder
        | builder
        | {
            let Some(app) = idle_app(builder).await else {
                return;
            };
            for (query, status, code, says) in [
                (
                    "kind=revue",
                    422,
                    "unprocessable",
                    "kind: unknown job kind \"revue\"; expected one of: noop, review, mention",
                ),
                (
                    "state=done",
                    422,
                    "unprocessable",
                    "state: unknown job state \"done\"; expected one of: queued, running, succeeded, failed, cancelled",
                ),
                (
                    "limit=0",
                    422,
                    "unprocessable",
                    "limit must be a whole number from 1 to 1000, not \"0\"",
                ),
                ("limit=1001", 422, "unprocessable", "from 1 to 1000"),
                ("limit=-1", 422, "unprocessable", "from 1 to 1000"),
                ("limit=ten", 422, "unprocessable", "not \"ten\""),
                (
                    "limit=99999999999999999999",
                    422,
                    "unprocessable",
                    "from 1 to 1000",
                ),
                (
                    "cursor=42",
                    400,
                    "bad_request",
                    "cursor must be the next_cursor of a previous page",
                ),
                (
                    "status=failed",
                    422,
                    "unprocessable",
                    "unknown field `status`",
                ),
                (
                    "state=queued&state=failed",
                    422,
                    "unprocessable",
                    "duplicate field `state`",
                ),
            ] {
                let body = expect_error(
                    get(&app, &format!("/api/v1/jobs?{query}")).await,
                    status,
                    code,
                )
                .await;
                assert!(body.message.contains(says), "{query}: {}", body.message);
            }
        }
);

app_test!(
    a_job_comes_with_its_events,
    builder | builder | {
        let Some(app) = idle_app(builder).await else {
            return;
        };
        let id = enqueue(&app, "detail", Some("installation:9")).await;
        let first = record(&app, &id, JobEventKind::Log, json!({"message": "one"})).await;
        let second = record(&app, &id, JobEventKind::Progress, json!({"done": 2})).await;

        let response = get(&app, &format!("/api/v1/jobs/{id}")).await;
        let value: Value = ok_json(response).await;
        // The job's fields sit at the top level, next to `events`.
        assert_eq!(value["id"], id.as_str());
        assert_eq!(value["state"], "queued");
        assert_eq!(value["concurrency_key"], "installation:9");
        let detail: JobDetail = serde_json::from_value(value).unwrap();
        assert_eq!(detail.job.id, id);
        assert_eq!(detail.events, vec![first, second]);

        // Another spelling of the same UUID finds the same job.
        let detail: JobDetail =
            ok_json(get(&app, &format!("/api/v1/jobs/{}", id.to_uppercase())).await).await;
        assert_eq!(detail.job.id, id);

        let body = expect_error(get(&app, "/api/v1/jobs/12345").await, 400, "bad_request").await;
        assert_eq!(body.message, "job id must be a UUID, not \"12345\"");
        let unknown = "0190a6e4-7c1e-7000-8000-000000000001";
        let body = expect_error(
            get(&app, &format!("/api/v1/jobs/{unknown}")).await,
            404,
            "not_found",
        )
        .await;
        assert_eq!(body.message, format!("no job with id {unknown}"));
    }
);

app_test!(
    a_queued_job_is_cancelled_and_retried,
    builder | builder | {
        let Some(app) = idle_app(builder).await else {
            return;
        };
        let id = enqueue(&app, "to cancel", None).await;

        let job: Job = ok_json(post(&app, &format!("/api/v1/jobs/{id}/cancel")).await).await;
        assert_eq!(job.id, id);
        assert_eq!(job.state, JobState::Cancelled);
        assert!(job.finished_at.is_some());
        let error = job.error.unwrap();
        assert_eq!(error.reason, kodiai_protocol::FailureReason::Cancelled);
        assert_eq!(error.message, "cancelled through the API");

        let detail: JobDetail = ok_json(get(&app, &format!("/api/v1/jobs/{id}")).await).await;
        assert_eq!(detail.job.state, JobState::Cancelled);
        assert_eq!(kinds(&detail.events), [JobEventKind::Finished]);
        assert_eq!(detail.events[0].data["state"], "cancelled");

        let body = expect_error(
            post(&app, &format!("/api/v1/jobs/{id}/cancel")).await,
            409,
            "conflict",
        )
        .await;
        assert_eq!(
            body.message,
            format!("job {id} is already cancelled; only queued or running jobs can be cancelled")
        );

        let job: Job = ok_json(post(&app, &format!("/api/v1/jobs/{id}/retry")).await).await;
        assert_eq!(job.state, JobState::Queued);
        assert_eq!(job.attempts, 0);
        assert_eq!(job.error, None);
        assert_eq!(job.finished_at, None);
        let body = expect_error(
            post(&app, &format!("/api/v1/jobs/{id}/retry")).await,
            409,
            "conflict",
        )
        .await;
        assert_eq!(
            body.message,
            format!("job {id} is queued; only failed or cancelled jobs can be retried")
        );
        // The log keeps the cancel and records the retry.
        let detail: JobDetail = ok_json(get(&app, &format!("/api/v1/jobs/{id}")).await).await;
        assert_eq!(
            kinds(&detail.events),
            [JobEventKind::Finished, JobEventKind::Log]
        );

        // A retried job can be cancelled again.
        let job: Job = ok_json(post(&app, &format!("/api/v1/jobs/{id}/cancel")).await).await;
        assert_eq!(job.state, JobState::Cancelled);

        let unknown = "0190a6e4-7c1e-7000-8000-000000000001";
        for action in ["cancel", "retry"] {
            let body = expect_error(
                post(&app, &format!("/api/v1/jobs/{unknown}/{action}")).await,
                404,
                "not_found",
            )
            .await;
            assert_eq!(body.message, format!("no job with id {unknown}"));
            expect_error(
                post(&app, &format!("/api/v1/jobs/nope/{action}")).await,
                400,
                "bad_request",
            )
            .await;
            // Wrong method on a known route.
            expect_error(
                get(&app, &format!("/api/v1/jobs/{id}/{action}")).await,
                405,
                "method_not_allowed",
            )
            .await;
        }
    }
);

app_test!(
    a_finished_job_streams_to_its_end_and_stays_finished,
    builder | builder | {
        // The built-in noop handler on the server's workers runs the job.
        let Some(app) = builder.env("KODIAI_ADMIN_TOKEN", TOKEN).spawn().await else {
            return;
        };
        let id = enqueue(&app, "runs", None).await;
        let mut stream = open_events(&app, &id, None).await;
        let events = read_to_end(&mut stream).await;
        assert_eq!(
            kinds(&events),
            [JobEventKind::Started, JobEventKind::Finished]
        );
        assert_eq!(events[1].data["state"], "succeeded");
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2]);

        let detail: JobDetail = ok_json(get(&app, &format!("/api/v1/jobs/{id}")).await).await;
        assert_eq!(detail.job.state, JobState::Succeeded);
        assert_eq!(detail.events, events);

        let body = expect_error(
            post(&app, &format!("/api/v1/jobs/{id}/cancel")).await,
            409,
            "conflict",
        )
        .await;
        assert!(
            body.message.contains("is already succeeded"),
            "{}",
            body.message
        );
        let body = expect_error(
            post(&app, &format!("/api/v1/jobs/{id}/retry")).await,
            409,
            "conflict",
        )
        .await;
        assert!(body.message.contains("is succeeded"), "{}", body.message);

        // A client reconnecting after the last event is told there is nothing more: 204, which
        // stops browsers' EventSource from reconnecting.
        let response = app
            .client
            .get(app.url(&format!("/api/v1/jobs/{id}/events")))
            .bearer_auth(TOKEN)
            .header("last-event-id", "2")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
        // From the middle, the rest and the end.
        let mut stream = open_events(&app, &id, Some("1")).await;
        assert_eq!(read_to_end(&mut stream).await, events[1..]);
    }
);

app_test!(
    cancelling_a_running_job_stops_its_handler_and_keeps_its_steps,
    builder | builder | {
        let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel::<String>();
        let (stopped_tx, mut stopped) = tokio::sync::mpsc::unbounded_channel::<String>();
        let handlers = Handlers::builtin().with(JobKind::Noop, move |ctx: JobContext| {
            let started = started_tx.clone();
            let stopped = stopped_tx.clone();
            async move {
                ctx.record_step("began", json!({"pages": 1})).await?;
                started.send(ctx.job().id.clone()).unwrap();
                ctx.cancelled().await;
                stopped.send(ctx.job().id.clone()).unwrap();
                Ok(json!("stopped"))
            }
        });
        let Some(app) = builder
            .env("KODIAI_ADMIN_TOKEN", TOKEN)
            .env("KODIAI_WORKERS", "1")
            .handlers(handlers)
            .spawn()
            .await
        else {
            return;
        };
        let id = enqueue(&app, "long", None).await;
        assert_eq!(started.recv().await.unwrap(), id);
        let mut stream = open_events(&app, &id, None).await;
        let running: JobDetail = ok_json(get(&app, &format!("/api/v1/jobs/{id}")).await).await;
        assert_eq!(running.job.state, JobState::Running);
        assert_eq!(running.job.attempts, 1);

        let job: Job = ok_json(post(&app, &format!("/api/v1/jobs/{id}/cancel")).await).await;
        assert_eq!(job.state, JobState::Cancelled);
        assert_eq!(job.lease_owner, None);

        // The handler is told to stop, and the stream ends with the job's end.
        assert_eq!(stopped.recv().await.unwrap(), id);
        let events = read_to_end(&mut stream).await;
        assert_eq!(
            kinds(&events),
            [
                JobEventKind::Started,
                JobEventKind::Step,
                JobEventKind::Finished
            ]
        );
        assert_eq!(
            events[1].data,
            json!({"name": "began", "result": {"pages": 1}})
        );
        assert_eq!(events[2].data["state"], "cancelled");

        // The handler's own result after the cancel changes nothing; the step stays in the log.
        let detail: JobDetail = ok_json(get(&app, &format!("/api/v1/jobs/{id}")).await).await;
        assert_eq!(detail.job.state, JobState::Cancelled);
        assert_eq!(detail.job.result, None);
        assert_eq!(detail.events, events);
    }
);

app_test!(
    the_event_stream_replays_after_last_event_id_then_follows_live,
    builder | builder | {
        let Some(app) = idle_app(builder).await else {
            return;
        };
        let id = enqueue(&app, "watched", None).await;
        let mut stored = Vec::new();
        for i in 1..=4 {
            stored.push(record(&app, &id, JobEventKind::Progress, json!({"step": i})).await);
        }

        let mut stream = open_events(&app, &id, Some("2")).await;
        for expected in &stored[2..4] {
            let sse = stream.next().await.unwrap();
            assert_eq!(&job_event(&sse), expected);
        }
        // Live: what is recorded now arrives next, in order, nothing in between.
        let live = [
            record(&app, &id, JobEventKind::Log, json!({"message": "five"})).await,
            record(
                &app,
                &id,
                JobEventKind::Step,
                json!({"name": "six", "result": null}),
            )
            .await,
        ];
        for expected in &live {
            let sse = stream.next().await.unwrap();
            assert_eq!(&job_event(&sse), expected);
            assert_eq!(sse.id, expected.seq.to_string());
        }
        // The job ends: its `finished` event is the stream's last.
        let state = app.state();
        let cancelled = state
            .store
            .cancel_job(&id, "enough", state.clock.now())
            .await
            .unwrap();
        assert!(matches!(cancelled, Some(Transition::Done(_))));
        let rest = read_to_end(&mut stream).await;
        assert_eq!(kinds(&rest), [JobEventKind::Finished]);
        assert_eq!(rest[0].seq, 7);

        // From the start, everything, then the end.
        let mut stream = open_events(&app, &id, None).await;
        let all = read_to_end(&mut stream).await;
        let seqs: Vec<i64> = all.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5, 6, 7]);
        // An empty Last-Event-ID counts as none.
        let mut stream = open_events(&app, &id, Some("")).await;
        assert_eq!(read_to_end(&mut stream).await, all);

        let events_of = |id: &str, last: &'static str| {
            app.client
                .get(app.url(&format!("/api/v1/jobs/{id}/events")))
                .bearer_auth(TOKEN)
                .header("last-event-id", last)
                .send()
        };
        for bad in ["two", "-1", "2.5"] {
            let body = expect_error(events_of(&id, bad).await.unwrap(), 400, "bad_request").await;
            assert!(
                body.message.starts_with("Last-Event-ID must be"),
                "{}",
                body.message
            );
        }
        expect_error(events_of("x", "1").await.unwrap(), 400, "bad_request").await;
        let unknown = "0190a6e4-7c1e-7000-8000-000000000001";
        expect_error(events_of(unknown, "1").await.unwrap(), 404, "not_found").await;
    }
);

app_test!(
    event_streams_end_when_the_server_shuts_down,
    builder | builder | {
        let Some(app) = idle_app(builder).await else {
            return;
        };
        let id = enqueue(&app, "never runs", None).await;
        record(&app, &id, JobEventKind::Log, json!({"message": "hello"})).await;
        let mut stream = open_events(&app, &id, None).await;
        assert_eq!(job_event(&stream.next().await.unwrap()).seq, 1);

        let stopping = tokio::spawn(app.stop());
        // Bounded only to fail rather than hang: a stream that ignored the shutdown would stay open
        // even past the grace period (axum keeps serving connections it has accepted).
        let end = tokio::time::timeout(std::time::Duration::from_secs(60), stream.next())
            .await
            .expect("the event stream ends when the server shuts down");
        assert!(end.is_none(), "the stream ends cleanly");
        stopping.await.unwrap();
    }
);

app_test!(the_openapi_document_describes_the_jobs_api, |app| {
    let doc: Value = ok_json(app.get("/openapi.json").await).await;
    for (method, route) in ROUTES {
        let operation = &doc["paths"][route][method.to_lowercase()];
        assert_eq!(operation["tags"], json!(["jobs"]), "{method} {route}");
        assert_eq!(
            operation["security"],
            json!([{"admin_token": []}]),
            "{method} {route}"
        );
        assert!(
            operation["responses"]["401"].is_object(),
            "{method} {route}"
        );
    }
    let scheme = &doc["components"]["securitySchemes"]["admin_token"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    // Every schema referenced anywhere is defined.
    let text = doc.to_string();
    for reference in text.split("\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap();
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{name} is referenced but not defined"
        );
    }
    assert!(doc["components"]["schemas"]["Job"].is_object());
    assert!(doc["components"]["schemas"]["JobDetail"].is_object());
});
