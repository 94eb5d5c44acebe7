//! Delivery and registry storage on both backends.

use chrono::{DateTime, TimeZone, Utc};
use kodiai_protocol::{DeliveryOutcome, JobSpec, NoopJob};

use super::*;
use crate::NewJob;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
}

fn payload() -> String {
    r#"{"action": "opened", "n": [1, 2]}"#.to_owned()
}

fn delivery<'a>(id: &'a str, payload: &'a str, at: DateTime<Utc>) -> NewDelivery<'a> {
    NewDelivery {
        delivery_id: id,
        event: "pull_request",
        action: Some("opened"),
        installation_id: Some(7),
        repository: Some("o/r"),
        sender: Some("octocat"),
        payload,
        received_at: at,
        outcome: StoredOutcome::Ignored("no reason"),
    }
}

crate::both_backends!(
    a_delivery_and_its_job_commit_together_and_a_duplicate_changes_nothing,
    |db| {
        let store = db.store().await;
        let body = payload();
        let mut new = delivery("d-1", &body, t0());
        new.outcome = StoredOutcome::Job;

        let mut tx = store.begin().await.unwrap();
        assert!(tx.insert_delivery(&new).await.unwrap());
        let job = tx
            .enqueue(
                &NewJob::new(JobSpec::Noop(NoopJob::default())).delivery("d-1"),
                t0(),
            )
            .await
            .unwrap();
        tx.commit().await.unwrap();

        // Rolled back: nothing of it stays.
        let mut tx = store.begin().await.unwrap();
        assert!(
            tx.insert_delivery(&delivery("d-2", &body, t0()))
                .await
                .unwrap()
        );
        drop(tx);
        assert!(store.delivery("d-2").await.unwrap().is_none());

        let mut tx = store.begin().await.unwrap();
        assert!(!tx.insert_delivery(&new).await.unwrap());
        tx.commit().await.unwrap();

        let detail = store.delivery("d-1").await.unwrap().unwrap();
        assert_eq!(
            detail.delivery.outcome,
            DeliveryOutcome::Job {
                job_id: job.id.clone()
            }
        );
        assert_eq!(detail.delivery.duplicates, 1);
        assert_eq!(detail.delivery.received_at, t0());
        assert_eq!(detail.jobs, vec![job.id]);
        assert_eq!(
            detail.payload,
            serde_json::json!({"action": "opened", "n": [1, 2]})
        );
        assert_eq!(store.delivery_count().await.unwrap(), 1);
        let (event, text) = store.delivery_payload("d-1").await.unwrap().unwrap();
        assert_eq!(event, "pull_request");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            detail.payload
        );
    }
);

crate::both_backends!(deliveries_list_newest_first_in_pages_and_by_filter, |db| {
    let store = db.store().await;
    let body = payload();
    let mut tx = store.begin().await.unwrap();
    for i in 0..5 {
        let id = format!("d-{i}");
        let mut new = delivery(&id, &body, t0() + chrono::Duration::seconds(i / 2));
        if i == 4 {
            new.event = "push";
            new.outcome = StoredOutcome::Recorded("CI status");
        }
        assert!(tx.insert_delivery(&new).await.unwrap());
    }
    tx.commit().await.unwrap();

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_deliveries(&DeliveryFilter::default(), 2, cursor)
            .await
            .unwrap();
        seen.extend(page.data.iter().map(|d| d.delivery_id.clone()));
        match page.next_cursor {
            Some(next) => cursor = Some(parse_cursor(&next).unwrap()),
            None => break,
        }
    }
    assert_eq!(seen, ["d-4", "d-3", "d-2", "d-1", "d-0"]);

    let pushes = store
        .list_deliveries(
            &DeliveryFilter {
                event: Some("push".into()),
                outcome: Some("recorded".into()),
            },
            10,
            None,
        )
        .await
        .unwrap();
    assert_eq!(pushes.data.len(), 1);
    assert_eq!(
        pushes.data[0].outcome,
        DeliveryOutcome::Recorded {
            reason: "CI status".into()
        }
    );
    assert!(parse_cursor("nonsense").is_none());
});

crate::both_backends!(installations_and_repositories_follow_their_events, |db| {
    let store = db.store().await;
    let mut installation = InstallationUpdate {
        id: 42,
        account_login: "octo-org".into(),
        account_type: "Organization".into(),
        app_slug: Some("kodiai".into()),
        state: InstallationState::Active,
    };
    let repo = |id: i64, name: &str| RepositoryUpdate {
        github_id: id,
        full_name: format!("octo-org/{name}"),
        name: name.into(),
        private: id % 2 == 0,
    };
    let mut tx = store.begin().await.unwrap();
    tx.upsert_installation(&installation, t0()).await.unwrap();
    tx.upsert_repository(42, &repo(1, "one"), t0())
        .await
        .unwrap();
    tx.upsert_repository(42, &repo(2, "two"), t0())
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // A rename keeps the row (same GitHub id); a removal clears the installation.
    let mut tx = store.begin().await.unwrap();
    tx.upsert_repository(42, &repo(1, "uno"), t0())
        .await
        .unwrap();
    tx.remove_repository(2, t0()).await.unwrap();
    installation.state = InstallationState::Suspended;
    tx.upsert_installation(&installation, t0()).await.unwrap();
    tx.commit().await.unwrap();

    let repos = store.repositories().await.unwrap();
    assert_eq!(
        repos,
        vec![
            RepositoryRecord {
                github_id: Some(2),
                full_name: "octo-org/two".into(),
                name: "two".into(),
                installation_id: None,
                private: true,
                active: false,
            },
            RepositoryRecord {
                github_id: Some(1),
                full_name: "octo-org/uno".into(),
                name: "uno".into(),
                installation_id: Some(42),
                private: false,
                active: true,
            },
        ]
    );
    let row = store.installation(42).await.unwrap().unwrap();
    assert_eq!(row.suspended_at, Some(t0()));
    assert_eq!(row.app_slug.as_deref(), Some("kodiai"));

    installation.state = InstallationState::Deleted;
    let mut tx = store.begin().await.unwrap();
    tx.upsert_installation(&installation, t0()).await.unwrap();
    tx.commit().await.unwrap();
    let row = store.installation(42).await.unwrap().unwrap();
    assert_eq!((row.suspended_at, row.deleted_at), (None, Some(t0())));
    assert!(
        store
            .repositories()
            .await
            .unwrap()
            .iter()
            .all(|r| !r.active)
    );
});
