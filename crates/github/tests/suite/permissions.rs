use std::time::Duration;

use kodiai_github::permissions::{Permission, TriggerDecision};
use kodiai_test_support::github::FakeGithub;

use super::*;

#[tokio::test(start_paused = true)]
async fn write_maintain_and_admin_may_trigger_others_are_refused_with_a_reason() {
    let fake = FakeGithub::start().await;
    for (login, role) in [
        ("w", "write"),
        ("m", "maintain"),
        ("a", "admin"),
        ("r", "read"),
        ("t", "triage"),
    ] {
        fake.set_permission("o/r", login, role);
    }
    let client = installation(&fake);
    for (login, expected) in [
        ("w", TriggerDecision::Permitted(Permission::Write)),
        ("m", TriggerDecision::Permitted(Permission::Maintain)),
        ("a", TriggerDecision::Permitted(Permission::Admin)),
    ] {
        assert_eq!(
            client.may_trigger("o", "r", login, &[]).await.unwrap(),
            expected,
            "{login}"
        );
    }
    for (login, permission) in [
        ("r", Permission::Read),
        ("t", Permission::Triage),
        ("stranger", Permission::None),
    ] {
        let decision = client.may_trigger("o", "r", login, &[]).await.unwrap();
        let TriggerDecision::Refused {
            permission: p,
            reason,
        } = &decision
        else {
            panic!("{login}: {decision:?}");
        };
        assert_eq!(*p, permission);
        assert!(
            reason.contains(login) && reason.contains("write"),
            "{reason}"
        );
        assert!(!decision.is_allowed());
    }
    let asked = fake.requests_to("GET", "/repos/o/r/collaborators/stranger/permission");
    assert_eq!(asked.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn allowed_users_need_no_permission_call() {
    let fake = FakeGithub::start().await;
    let client = installation(&fake);
    let allowed = vec!["@Reader".to_owned(), "other".to_owned()];
    assert_eq!(
        client
            .may_trigger("o", "r", "reader", &allowed)
            .await
            .unwrap(),
        TriggerDecision::AllowedUser
    );
    assert!(
        fake.requests()
            .iter()
            .all(|r| !r.path.contains("collaborators"))
    );
}

#[tokio::test(start_paused = true)]
async fn answers_are_cached_briefly() {
    let fake = FakeGithub::start().await;
    fake.set_permission("o/r", "alice", "write");
    let mut o = options(&fake);
    o.permission_cache_ttl = Duration::from_secs(120);
    let client = app_client(&fake, o).installation(Some(INSTALLATION));
    let path = "/repos/o/r/collaborators/alice/permission";
    assert!(
        client
            .may_trigger("o", "r", "alice", &[])
            .await
            .unwrap()
            .is_allowed()
    );
    assert!(
        client
            .may_trigger("o", "r", "Alice", &[])
            .await
            .unwrap()
            .is_allowed()
    );
    assert_eq!(
        fake.requests_to("GET", path).len(),
        1,
        "second answer from the cache"
    );
    // Access removed: still cached for a moment, then GitHub is asked again.
    fake.set_permission("o/r", "alice", "read");
    tokio::time::advance(Duration::from_secs(60)).await;
    assert!(
        client
            .may_trigger("o", "r", "alice", &[])
            .await
            .unwrap()
            .is_allowed()
    );
    tokio::time::advance(Duration::from_secs(61)).await;
    assert!(
        !client
            .may_trigger("o", "r", "alice", &[])
            .await
            .unwrap()
            .is_allowed()
    );
    assert_eq!(fake.requests_to("GET", path).len(), 2);
}
