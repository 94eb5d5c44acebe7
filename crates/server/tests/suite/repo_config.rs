//! `.kodiai.yml` from the outside: `kodiai config check FILE` (output and exit code, the same
//! messages the bot posts), `GET /schema/kodiai.json`, and `kodiai app manifest`.

use std::path::Path;
use std::process::Output;

use kodiai_github_app::repo_config;
use pretty_assertions::assert_eq as assert_same;

const EXE: &str = env!("CARGO_BIN_EXE_kodiai");

async fn kodiai(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(EXE);
    command
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("KODIAI_CONFIG")
        .env("KODIAI_DATA_DIR", dir.join("data"));
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().await.unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[tokio::test]
async fn config_check_prints_what_the_bot_would_say_and_exits_0_or_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(".kodiai.yml");

    // Valid, with an unknown key: a warning, exit 0.
    let text = "review:\n  skip_authors: [dependabot]\n  colour: blue\nsettings:\n  maxTurns: 10\n";
    std::fs::write(&file, text).unwrap();
    let output = kodiai(dir.path(), &["config", "check", ".kodiai.yml"], &[]).await;
    assert_same!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_same!(
        stdout(&output),
        ".kodiai.yml:3: warning: review.colour: unknown key, ignored\n\
         .kodiai.yml: valid, with 1 warning\n"
    );

    // Invalid: the same lines as the comment's, exit 2.
    let text = "trigger: \"@kodiai\"\nsettings:\n  timeout_seconds: forever\nzzz: 1\n";
    std::fs::write(&file, text).unwrap();
    let output = kodiai(dir.path(), &["config", "check", ".kodiai.yml"], &[]).await;
    assert_same!(output.status.code(), Some(2));
    let parsed = repo_config::parse(text);
    assert_same!(
        stdout(&output),
        repo_config::render_check(".kodiai.yml", &parsed)
    );
    assert_same!(
        stdout(&output).lines().next(),
        Some(
            ".kodiai.yml:3: error: settings.timeout_seconds: expected a whole number, found \"forever\""
        )
    );
    let comment = repo_config::render_comment(&parsed, "main").unwrap();
    for line in stdout(&output).lines().filter(|l| l.contains(": error: ")) {
        assert!(comment.contains(line), "{line} not in {comment}");
    }

    // A valid file with no findings.
    std::fs::write(&file, "review:\n  on: [opened, synchronize]\n").unwrap();
    let output = kodiai(dir.path(), &["config", "check", ".kodiai.yml"], &[]).await;
    assert_same!(output.status.code(), Some(0));
    assert_same!(stdout(&output), ".kodiai.yml: valid\n");
}

#[tokio::test]
async fn config_check_needs_no_server_configuration() {
    // A bad server setting stops `serve`, not the check of a repository's file.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("k.yml"), "review: {enabled: false}\n").unwrap();
    let output = kodiai(dir.path(), &["config", "check", "k.yml"], &[("PORT", "x")]).await;
    assert_same!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_same!(stdout(&output), "k.yml: valid\n");
    // Without FILE it checks the server configuration, as before.
    let output = kodiai(dir.path(), &["config", "check"], &[("PORT", "x")]).await;
    assert_same!(output.status.code(), Some(2));
}

#[tokio::test]
async fn config_check_refuses_hostile_and_unreadable_files() {
    let dir = tempfile::tempdir().unwrap();

    let missing = kodiai(dir.path(), &["config", "check", "nope.yml"], &[]).await;
    assert_same!(missing.status.code(), Some(2));
    assert_same!(stderr(&missing).lines().count(), 1);
    assert!(stderr(&missing).starts_with("kodiai: nope.yml: cannot read"));

    std::fs::write(dir.path().join("bin.yml"), [0xff, 0xfe, 0x00]).unwrap();
    let binary = kodiai(dir.path(), &["config", "check", "bin.yml"], &[]).await;
    assert_same!(binary.status.code(), Some(2));
    assert_same!(stderr(&binary), "kodiai: bin.yml: not UTF-8 text\n");

    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let items = [format!("*a{}", i - 1).as_str(); 10].join(", ");
        bomb.push_str(&format!("a{i}: &a{i} [{items}]\n"));
    }
    std::fs::write(dir.path().join("bomb.yml"), bomb).unwrap();
    let output = kodiai(dir.path(), &["config", "check", "bomb.yml"], &[]).await;
    assert_same!(output.status.code(), Some(2));
    assert!(
        stdout(&output).contains(": error: YAML document too large or too complex"),
        "{}",
        stdout(&output)
    );

    let huge = format!("review:\n  prompt: \"{}\"\n", "a".repeat(200_000));
    std::fs::write(dir.path().join("huge.yml"), huge).unwrap();
    let output = kodiai(dir.path(), &["config", "check", "huge.yml"], &[]).await;
    assert_same!(output.status.code(), Some(2));
    // Only the first 64 KiB + 1 byte are read.
    assert_same!(
        stdout(&output).lines().next(),
        Some(
            format!(
                "huge.yml: error: the file is larger than {} bytes, the most kodiai reads",
                repo_config::MAX_FILE_BYTES
            )
            .as_str()
        )
    );
}

app_test!(the_schema_is_served, |app| {
    let response = app.get("/schema/kodiai.json").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/schema+json"
    );
    let schema: serde_json::Value = response.json().await.unwrap();
    assert_eq!(&schema, repo_config::json_schema());
    assert!(schema["properties"]["review"].is_object());

    // And it is in the OpenAPI document.
    let openapi: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(openapi["paths"]["/schema/kodiai.json"]["get"].is_object());
});

#[tokio::test]
async fn app_manifest_prints_the_manifest_or_the_form() {
    let dir = tempfile::tempdir().unwrap();
    let output = kodiai(
        dir.path(),
        &["app", "manifest", "--url", "https://kodiai.example.com"],
        &[("PORT", "not-needed")],
    )
    .await;
    assert_same!(output.status.code(), Some(0), "{}", stderr(&output));
    let manifest: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_same!(
        manifest,
        kodiai_github_app::app_manifest::manifest("https://kodiai.example.com", "kodiai").unwrap()
    );
    assert_same!(
        manifest["hook_attributes"]["url"],
        "https://kodiai.example.com/webhooks/github"
    );
    assert_same!(manifest["name"], "kodiai");

    let output = kodiai(
        dir.path(),
        &[
            "app",
            "manifest",
            "--url",
            "https://k.example.com",
            "--name",
            "acme-kodiai",
            "--html",
            "--org",
            "acme",
        ],
        &[],
    )
    .await;
    assert_same!(output.status.code(), Some(0), "{}", stderr(&output));
    let page = stdout(&output);
    assert!(page.contains("action=\"https://github.com/organizations/acme/settings/apps/new\""));
    assert!(page.contains("&quot;name&quot;:&quot;acme-kodiai&quot;"));

    let output = kodiai(dir.path(), &["app", "manifest", "--url", "http://k"], &[]).await;
    assert_same!(output.status.code(), Some(2));
    assert_same!(
        stderr(&output),
        "kodiai: --url \"http://k\": expected the server's public https URL, e.g. https://kodiai.example.com\n"
    );
}
