use kodiai_github::contents::RepoFile;
use kodiai_test_support::github::FakeGithub;

use super::*;

const PATH: &str = "/repos/o/r/contents/.kodiai.yml";

#[tokio::test(start_paused = true)]
async fn kodiai_yml_is_read_from_the_default_branch_and_cached_by_blob_sha() {
    let fake = FakeGithub::start().await;
    // Long enough that GitHub's base64 is wrapped over several lines.
    let text = format!(
        "trigger: \"@bot\"\nreview:\n  prompt: \"{}\"\n",
        "be brief ".repeat(20)
    );
    fake.put_file("o/r", ".kodiai.yml", &text);
    let client = installation(&fake);

    let RepoFile::Found { sha, text: got } = client.fetch_repo_config("o", "r").await.unwrap()
    else {
        panic!("found");
    };
    assert_eq!(&*got, text);
    let first = &fake.requests_to("GET", PATH)[0];
    assert_eq!(
        first.query_param("ref"),
        None,
        "the default branch, never a pull request's head"
    );
    assert_eq!(first.header("if-none-match"), None);

    // Unchanged: a conditional request, answered 304, the same text.
    let again = client.fetch_repo_config("o", "r").await.unwrap();
    assert_eq!(
        again,
        RepoFile::Found {
            sha: sha.clone(),
            text: got.clone()
        }
    );
    let second = &fake.requests_to("GET", PATH)[1];
    assert_eq!(
        second.header("if-none-match"),
        Some(format!("\"{sha}\"").as_str())
    );
    assert_eq!(second.status, 304);

    // Changed: a new sha and the new text.
    fake.put_file("o/r", ".kodiai.yml", "trigger: \"@other\"\n");
    let RepoFile::Found { sha: sha2, text } = client.fetch_repo_config("o", "r").await.unwrap()
    else {
        panic!("found");
    };
    assert_ne!(sha2, sha);
    assert_eq!(&*text, "trigger: \"@other\"\n");

    // Removed: missing, so the defaults apply.
    fake.remove_file("o/r", ".kodiai.yml");
    assert_eq!(
        client.fetch_repo_config("o", "r").await.unwrap(),
        RepoFile::Missing
    );
}

#[tokio::test(start_paused = true)]
async fn a_repository_without_the_file_has_none() {
    let fake = FakeGithub::start().await;
    assert_eq!(
        installation(&fake)
            .fetch_repo_config("o", "empty")
            .await
            .unwrap(),
        RepoFile::Missing
    );
}
