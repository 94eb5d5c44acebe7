//! The review context fetched from the fake GitHub: every page of a 250-file pull request, its
//! commits and CI, the issues its body closes, and guideline files read at the base commit.

use kodiai_github_app::context::{
    PromptBudget, SkipReason, build_review_prompt, fetch_review_input,
};
use kodiai_github_app::repo_config::RepoConfig;
use kodiai_runtime::config::{Config, Env};
use kodiai_test_support::github::FakeGithub;
use serde_json::json;

const REPO: &str = "acme/app";
const BASE_SHA: &str = "2222222222222222222222222222222222222222";
const HEAD_SHA: &str = "1111111111111111111111111111111111111111";

fn client(fake: &FakeGithub) -> kodiai_github::client::InstallationClient {
    fake.accept_token("ghp_context_test");
    let mut env: Env = fake
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    env.insert("GITHUB_TOKEN".into(), "ghp_context_test".into());
    let config = Config::from_sources(None, &env).unwrap();
    kodiai_github_app::client::build_client(&config.github)
        .unwrap()
        .unwrap()
        .installation(None)
}

fn seed(fake: &FakeGithub) {
    fake.add_repo(REPO, "main");
    fake.add_pull(
        REPO,
        7,
        json!({
            "title": "Add the widgets",
            "body": "Adds 250 widgets.\n\nFixes #12, closes other/lib#3.\n<!-- fixes #99 -->",
            "user": {"login": "alice", "type": "User"},
            "head": {"ref": "widgets", "sha": HEAD_SHA},
            "base": {"ref": "main", "sha": BASE_SHA},
            "changed_files": 250,
        }),
    );
    let mut files: Vec<_> = (0..249)
        .map(|i| {
            json!({"filename": format!("src/widget_{i:03}.rs"), "status": "added",
                   "additions": 1, "deletions": 0,
                   "patch": format!("@@ -0,0 +1 @@\n+pub struct Widget{i};")})
        })
        .collect();
    files.push(
        json!({"filename": "Cargo.lock", "status": "modified", "additions": 1,
                      "deletions": 1, "patch": "@@ -1 +1 @@\n-a\n+b"}),
    );
    fake.set_pull_files(REPO, 7, files);
    fake.set_pull_commits(
        REPO,
        7,
        vec![json!({"sha": "c".repeat(40), "commit": {"message": "Add the widgets"}})],
    );
    fake.set_check_runs(
        REPO,
        HEAD_SHA,
        vec![json!({"id": 1, "name": "build", "status": "completed", "conclusion": "success"})],
    );
    fake.set_statuses(
        REPO,
        HEAD_SHA,
        vec![json!({"context": "ci/lint", "state": "failure", "description": "2 warnings"})],
    );
    fake.add_issue(REPO, 12, "We need widgets", "Many of them.", "bob");
    fake.add_issue(REPO, 99, "hidden", "", "bob");
    // other/lib#3 does not exist for this installation: a 404, left out.
    fake.put_file_at(REPO, BASE_SHA, "CONTRIBUTING.md", "Write tests.");
    // On the default branch but not at the base commit: not read.
    fake.put_file(REPO, "AGENTS.md", "from the default branch");
}

#[tokio::test]
async fn every_page_of_files_and_the_linked_issues_are_fetched() {
    let fake = FakeGithub::start().await;
    seed(&fake);
    let client = client(&fake);
    let config = RepoConfig::default();
    let input = fetch_review_input(&client, "acme", "app", 7, &config.review)
        .await
        .unwrap();

    assert_eq!(input.files.len(), 250);
    assert_eq!(input.changed_files, 250);
    let pages = fake.requests_to("GET", "/repos/acme/app/pulls/7/files");
    assert_eq!(pages.len(), 3, "100 a page");
    assert_eq!(input.author, "alice");
    assert_eq!(input.head.sha, HEAD_SHA);
    assert_eq!(input.commits.len(), 1);
    assert_eq!(
        input.ci.checks.as_ref().unwrap()[0].conclusion.as_deref(),
        Some("success")
    );
    assert_eq!(input.ci.status.as_ref().unwrap().0, "failure");

    let issues: Vec<String> = input
        .linked_issues
        .iter()
        .map(|i| format!("{} {}", i.reference, i.title))
        .collect();
    assert_eq!(issues, ["#12 We need widgets"]);
    assert!(fake.requests_to("GET", "/repos/other/lib/issues/3").len() == 1);
    assert!(
        fake.requests_to("GET", "/repos/acme/app/issues/99")
            .is_empty()
    );

    assert_eq!(
        input.instructions.guidelines,
        [("CONTRIBUTING.md".to_owned(), "Write tests.".to_owned())]
    );
    let contents = fake.requests_to("GET", "/repos/acme/app/contents/CONTRIBUTING.md");
    assert_eq!(contents[0].query_param("ref").as_deref(), Some(BASE_SHA));

    let prompt = build_review_prompt(
        &input,
        &PromptBudget::for_model("anthropic/claude-sonnet-4-5"),
    );
    assert_eq!(prompt.included.len(), 249);
    assert_eq!(prompt.skipped.len(), 1);
    assert_eq!(prompt.skipped[0].reason, SkipReason::LockFile);
    assert!(prompt.user.contains("### #12 (open): We need widgets"));
    assert!(prompt.user.contains("Write tests."));
    assert!(!prompt.user.contains("from the default branch"));
}

#[tokio::test]
async fn a_pull_request_without_ci_access_or_guidelines_still_has_a_context() {
    let fake = FakeGithub::start().await;
    fake.add_pull(REPO, 8, json!({"body": null}));
    fake.set_pull_files(
        REPO,
        8,
        vec![json!({"filename": "a.rs", "status": "added",
        "additions": 1, "deletions": 0, "patch": "@@ -0,0 +1 @@\n+fn a() {}"})],
    );
    fake.script(kodiai_test_support::github::Scripted::new(
        "GET",
        &format!("/repos/acme/app/commits/{HEAD_SHA}/check-runs"),
        403,
    ));
    let client = client(&fake);
    let input = fetch_review_input(&client, "acme", "app", 8, &RepoConfig::default().review)
        .await
        .unwrap();
    assert_eq!(input.ci.checks, None);
    assert!(input.instructions.guidelines.is_empty());
    assert!(input.linked_issues.is_empty());
    let prompt = build_review_prompt(&input, &PromptBudget::tokens(50_000));
    assert!(prompt.user.contains("- Check runs: not visible to kodiai"));
    assert_eq!(prompt.included, ["a.rs"]);
}
