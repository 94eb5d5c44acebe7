//! Routing decisions, from the payload alone: every webhook fixture (the repository's set, which
//! covers every rule, and octokit's full set of `../shared` where a machine has it), and the
//! rules of who may trigger.

use std::collections::BTreeSet;
use std::path::Path;

use kodiai_protocol::{JobKind, JobSpec, MentionSource};
use kodiai_test_support::webhooks::{every_fixture, fixtures_dir, shared_fixtures_dir};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use super::*;
use kodiai_runtime::config::{Config, Env};

fn ingress(env: &[(&str, &str)]) -> Ingress {
    let env: Env = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Ingress::from_config(&Config::from_sources(None, &env).unwrap())
}

fn route(ingress: &Ingress, event: &str, payload: &Value) -> Decision {
    let text = payload.to_string();
    ingress
        .route(&Incoming {
            delivery_id: "d-1",
            event,
            payload: &text,
        })
        .unwrap()
        .decision
}

/// Every fixture file of `dir` as (event, file name, payload).
fn fixtures_in(dir: &Path) -> Vec<(String, String, Value)> {
    every_fixture(dir)
        .into_iter()
        .map(|(event, name, bytes)| {
            let payload =
                serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{event}/{name}: {e}"));
            (event, name, payload)
        })
        .collect()
}

fn kind(decision: &Decision) -> Option<JobKind> {
    match decision {
        Decision::Job(job) => Some(job.spec.kind()),
        _ => None,
    }
}

/// Where the text a mention is looked for lives, per event.
fn text_pointer(event: &str) -> Option<&'static str> {
    match event {
        "issue_comment" | "pull_request_review_comment" => Some("/comment/body"),
        "pull_request_review" => Some("/review/body"),
        "issues" => Some("/issue/body"),
        _ => None,
    }
}

/// Routes every payload of `all` and checks the decision its event and action call for, and
/// the decision of the same payload with a mention.
fn assert_routes_as_event_and_action_say(all: &[(String, String, Value)]) {
    let ingress = ingress(&[]);
    for (event, name, payload) in all {
        let action = payload["action"].as_str().unwrap_or("");
        let what = format!("{event}/{name}");
        // Every routed event parses into its typed struct.
        let parsed = Event::parse(event, payload.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(!matches!(parsed, Event::Other(_)), "{what}");

        let decision = route(&ingress, event, payload);
        match event.as_str() {
            "pull_request" if REVIEW_ACTIONS.contains(&action) => {
                assert_eq!(kind(&decision), Some(JobKind::Review), "{what}");
            }
            "push" | "workflow_run" | "check_suite" => {
                assert!(
                    matches!(decision, Decision::Recorded(_)),
                    "{what}: {decision:?}"
                );
            }
            "installation" | "installation_repositories" => {
                assert!(
                    matches!(decision, Decision::Registry(_)),
                    "{what}: {decision:?}"
                );
            }
            // No fixture mentions @kodiai: nothing else makes a job.
            _ => assert!(
                matches!(decision, Decision::Ignored(_)),
                "{what}: {decision:?}"
            ),
        }

        // The same payload with a mention: a job exactly for the actions that take one.
        if let Some(pointer) = text_pointer(event) {
            let mut mentioned = payload.clone();
            *mentioned.pointer_mut(pointer).unwrap() = json!("@kodiai why does this fail?");
            if event == "issues" && action == "edited" {
                // An edit that adds the first mention.
                mentioned["changes"] = json!({"body": {"from": "no mention"}});
            }
            let decision = route(&ingress, event, &mentioned);
            let takes_job = matches!(
                (event.as_str(), action),
                ("issue_comment" | "pull_request_review_comment", "created")
                    | ("pull_request_review", "submitted")
                    | ("issues", "opened" | "edited")
            );
            if takes_job {
                let Decision::Job(job) = &decision else {
                    panic!("{what} with a mention: {decision:?}");
                };
                let JobSpec::Mention(mention) = &job.spec else {
                    panic!("{what}: {job:?}");
                };
                assert_eq!(mention.request, "why does this fail?", "{what}");
                assert_eq!(mention.delivery_id, "d-1");
                assert_eq!(job.delivery_id.as_deref(), Some("d-1"));
            } else {
                assert!(
                    matches!(decision, Decision::Ignored(_)),
                    "{what}: {decision:?}"
                );
            }
        }
    }
}

/// The (event, action) pairs the repository's fixtures must include: every branch of the
/// router that a payload of GitHub's takes (`ping`, unknown events and unknown installation
/// actions are tested with payloads of their own).
fn routing_rules() -> BTreeSet<(&'static str, &'static str)> {
    let mut rules: BTreeSet<(&str, &str)> = REVIEW_ACTIONS
        .iter()
        .map(|action| ("pull_request", *action))
        .collect();
    rules.extend([
        ("pull_request", "closed"),
        ("issue_comment", "created"),
        ("issue_comment", "edited"),
        ("issue_comment", "deleted"),
        ("pull_request_review_comment", "created"),
        ("pull_request_review_comment", "edited"),
        ("pull_request_review_comment", "deleted"),
        ("pull_request_review", "submitted"),
        ("pull_request_review", "dismissed"),
        ("issues", "opened"),
        ("issues", "edited"),
        ("issues", "reopened"),
        ("push", ""),
        ("workflow_run", "completed"),
        ("workflow_run", "requested"),
        ("check_suite", "completed"),
        ("check_suite", "requested"),
        ("installation", "created"),
        ("installation", "deleted"),
        ("installation", "suspend"),
        ("installation", "unsuspend"),
        ("installation", "new_permissions_accepted"),
        ("installation_repositories", "added"),
        ("installation_repositories", "removed"),
    ]);
    rules
}

#[test]
fn every_fixture_parses_and_routes_as_its_event_and_action_say() {
    let all = fixtures_in(&fixtures_dir());
    let have: BTreeSet<(&str, &str)> = all
        .iter()
        .map(|(event, _, payload)| (event.as_str(), payload["action"].as_str().unwrap_or("")))
        .collect();
    let missing: Vec<_> = routing_rules().difference(&have).copied().collect();
    assert_eq!(missing, vec![], "rules without a fixture");
    // The edge cases: an issue and a pull request without a body, an edit that changes no body.
    let with = |event: &str, pointer: &str, value: Value| {
        all.iter()
            .any(|(e, _, p)| e == event && p.pointer(pointer) == Some(&value))
    };
    assert!(with("issues", "/issue/body", Value::Null), "an empty issue");
    assert!(
        with("pull_request", "/pull_request/body", Value::Null),
        "a pull request with a null body"
    );
    assert!(with("issues", "/changes", json!({})), "an edit of no body");
    assert_routes_as_event_and_action_say(&all);
}

/// The same over octokit's 97 examples, where `../shared` lies beside the repository.
#[test]
fn every_shared_fixture_parses_and_routes_as_its_event_and_action_say() {
    let Some(dir) = shared_fixtures_dir() else {
        eprintln!("skipped: no ../shared/fixtures/github-webhooks beside the repository");
        return;
    };
    let all = fixtures_in(&dir);
    assert!(all.len() >= 97, "{} fixtures", all.len());
    assert_routes_as_event_and_action_say(&all);
}

fn fixture(path: &str) -> Value {
    let text = std::fs::read_to_string(fixtures_dir().join(path)).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_review_job_names_the_pull_request_its_head_and_its_delivery() {
    let decision = route(
        &ingress(&[]),
        "pull_request",
        &fixture("pull_request/opened.payload.json"),
    );
    let Decision::Job(job) = decision else {
        panic!("{decision:?}");
    };
    assert_eq!(job.installation_id, Some(1));
    assert_eq!(job.concurrency_key.as_deref(), Some("installation:1"));
    let JobSpec::Review(review) = &job.spec else {
        panic!("{job:?}");
    };
    assert_eq!(
        (
            review.repository.as_str(),
            review.pull_number,
            review.action.as_str()
        ),
        ("Codertocat/Hello-World", 2, "opened")
    );
    assert_eq!(review.delivery_id, "d-1");
    // The job's JSON shows the delivery id.
    let json = serde_json::to_value(&job.spec).unwrap();
    assert_eq!(json["delivery_id"], "d-1");
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

fn reason(decision: &Decision) -> &str {
    match decision {
        Decision::Ignored(reason) => reason,
        other => panic!("not ignored: {other:?}"),
    }
}

#[test]
fn bots_and_kodiai_itself_never_trigger_unless_a_bot_is_allowed() {
    let ingress = ingress(&[
        ("GITHUB_APP_SLUG", "kodiai"),
        ("KODIAI_ALLOWED_BOTS", "renovate[bot]"),
    ]);
    let own = route(
        &ingress,
        "issue_comment",
        &comment("@kodiai again", "kodiai[bot]", "Bot"),
    );
    assert_eq!(reason(&own), "kodiai's own event (kodiai[bot])");
    let bot = route(
        &ingress,
        "issue_comment",
        &comment("@kodiai hi", "dependabot[bot]", "Bot"),
    );
    assert_eq!(
        reason(&bot),
        "dependabot[bot] is a bot (not in mentions.allowed_bots)"
    );
    let allowed = route(
        &ingress,
        "issue_comment",
        &comment("@kodiai hi", "renovate[bot]", "Bot"),
    );
    let Decision::Job(job) = allowed else {
        panic!("{allowed:?}");
    };
    let JobSpec::Mention(mention) = &job.spec else {
        panic!("{job:?}");
    };
    assert!(mention.sender_is_bot);
    assert_eq!(mention.source, MentionSource::IssueComment);

    // Pull requests too: kodiai's own are never reviewed.
    let mut pr = fixture("pull_request/opened.payload.json");
    pr["sender"]["login"] = json!("kodiai[bot]");
    pr["sender"]["type"] = json!("Bot");
    assert_eq!(
        reason(&route(&ingress, "pull_request", &pr)),
        "kodiai's own event (kodiai[bot])"
    );

    // Any bot with `*`, still never kodiai itself.
    let any = self::ingress(&[("GITHUB_APP_SLUG", "kodiai"), ("KODIAI_ALLOWED_BOTS", "*")]);
    assert!(matches!(
        route(
            &any,
            "issue_comment",
            &comment("@kodiai hi", "dependabot[bot]", "Bot")
        ),
        Decision::Job(_)
    ));
    assert!(matches!(
        route(
            &any,
            "issue_comment",
            &comment("@kodiai hi", "KODIAI[bot]", "Bot")
        ),
        Decision::Ignored(_)
    ));
}

#[test]
fn edits_never_trigger_again_and_an_empty_mention_is_ignored() {
    let ingress = ingress(&[]);
    let mut edited = comment("@kodiai explain", "octocat", "User");
    edited["action"] = json!("edited");
    assert_eq!(
        reason(&route(&ingress, "issue_comment", &edited)),
        "edited comments do not trigger"
    );
    let mut issue = fixture("issues/edited.payload.json");
    issue["issue"]["body"] = json!("@kodiai explain, edited");
    issue["changes"] = json!({"body": {"from": "@kodiai explain"}});
    assert_eq!(
        reason(&route(&ingress, "issues", &issue)),
        "edits do not trigger again"
    );
    assert_eq!(
        reason(&route(
            &ingress,
            "issue_comment",
            &comment("@kodiai", "octocat", "User")
        )),
        "@kodiai with nothing asked"
    );
    assert_eq!(
        reason(&route(
            &ingress,
            "issue_comment",
            &comment("`@kodiai` is our bot", "octocat", "User")
        )),
        "no @kodiai mention"
    );
}

#[test]
fn aliases_and_the_configured_trigger_come_from_the_configuration() {
    let ingress = ingress(&[
        ("KODIAI_TRIGGER", "helper"),
        ("KODIAI_TRIGGER_ALIASES", "@claude"),
    ]);
    for text in ["@helper go", "@Claude go"] {
        assert!(
            matches!(
                route(&ingress, "issue_comment", &comment(text, "octocat", "User")),
                Decision::Job(_)
            ),
            "{text}"
        );
    }
    assert_eq!(
        reason(&route(
            &ingress,
            "issue_comment",
            &comment("@kodiai go", "octocat", "User")
        )),
        "no @helper or @claude mention"
    );
}

#[test]
fn review_comments_reply_in_their_thread() {
    let mut payload = fixture("pull_request_review_comment/created.payload.json");
    payload["comment"]["body"] = json!("@kodiai is this right?");
    payload["comment"]["in_reply_to_id"] = json!(17);
    let Decision::Job(job) = route(&ingress(&[]), "pull_request_review_comment", &payload) else {
        panic!("no job");
    };
    let JobSpec::Mention(mention) = &job.spec else {
        panic!("{job:?}");
    };
    assert_eq!(mention.reply_to, Some(17));
    assert!(mention.is_pull_request);
    assert_eq!(mention.source, MentionSource::ReviewComment);
}

#[test]
fn installation_actions_that_change_nothing_are_ignored() {
    let ingress = ingress(&[]);
    let mut installation = fixture("installation/created.payload.json");
    installation["action"] = json!("unknown_action");
    assert_eq!(
        reason(&route(&ingress, "installation", &installation)),
        "installation unknown_action is not routed"
    );
    let mut repositories = fixture("installation_repositories/added.payload.json");
    repositories["action"] = json!("unknown_action");
    assert_eq!(
        reason(&route(&ingress, "installation_repositories", &repositories)),
        "installation_repositories unknown_action is not routed"
    );
}

#[test]
fn unknown_events_unreadable_payloads_and_non_json() {
    let ingress = ingress(&[]);
    assert_eq!(
        reason(&route(&ingress, "star", &json!({"action": "created"}))),
        "event star is not routed"
    );
    let broken = route(
        &ingress,
        "pull_request",
        &json!({"action": "opened", "number": "two"}),
    );
    assert!(
        reason(&broken).starts_with("unreadable pull_request payload: "),
        "{broken:?}"
    );
    assert!(
        ingress
            .route(&Incoming {
                delivery_id: "d",
                event: "push",
                payload: "not json"
            })
            .is_err()
    );
}
