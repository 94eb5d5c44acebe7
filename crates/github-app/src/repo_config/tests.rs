//! Unit tests of `.kodiai.yml` reading: every key of SPEC §3, every camelCase alias, unknown
//! keys, wrong types and values with their lines, hostile files, and the rendered comment.

use std::time::Instant;

use pretty_assertions::assert_eq;

use super::*;

fn globs(patterns: &[&str]) -> PathSet {
    PathSet::new(patterns, false).unwrap()
}

fn diagnostic(severity: Severity, line: u64, key: &str, message: &str) -> Diagnostic {
    Diagnostic {
        severity,
        line: Some(line),
        key: Some(key.to_owned()),
        message: message.to_owned(),
    }
}

/// Parses a file that must be valid, with no warnings.
fn clean(text: &str) -> RepoConfig {
    let parsed = parse(text);
    assert_eq!(parsed.diagnostics, []);
    parsed.config
}

#[test]
fn a_missing_or_empty_file_is_the_defaults() {
    for text in ["", "\n\n", "# nothing yet\n", "~\n", "---\n", "null\n"] {
        assert_eq!(clean(text), RepoConfig::default(), "{text:?}");
    }
    let d = RepoConfig::default();
    assert_eq!(d.trigger, "@kodiai");
    assert_eq!(
        d.review.on,
        [ReviewAction::Opened, ReviewAction::ReadyForReview]
    );
    assert!(d.review.enabled && d.review.skip_drafts && d.review.approve_when_clean);
    assert!(d.mention.enabled && !d.permissions.allow_bots);
    assert_eq!(
        (d.settings.max_turns, d.settings.timeout_seconds),
        (25, 300)
    );
    assert!(d.settings.collapse_responses);
    assert_eq!(d.model, None);
    assert!(!d.write.enabled);
    assert_eq!(d.write.deny_paths.patterns(), DEFAULT_DENY_PATHS);
}

#[test]
fn every_key_of_the_spec_is_read() {
    let text = r#"
trigger: "@helper"
review:
  enabled: false
  on: [opened, synchronize, reopened]
  paths: ["src/**"]
  ignore_paths: ["**/*.snap"]
  skip_authors: [dependabot, "@renovate"]
  skip_drafts: false
  prompt: "Look for bugs only."
  approve_when_clean: false
  incremental: false
mention:
  enabled: false
  prompt: "Answer briefly."
  aliases: ["@claude"]
  on_issue_edited: true
permissions:
  allow_bots: true
  allowed_users: [alice]
  reply_when_refused: false
settings:
  max_turns: 40
  timeout_seconds: 900
  collapse_responses: false
  allowed_tools: [run_command]
model: "openai/gpt-4.1"
mcp_servers:
  docs:
    command: npx
    args: [-y, "@acme/docs-mcp"]
    env: {DOCS_LANG: en}
  search:
    url: https://mcp.example.com/mcp
    headers: {X-Team: core}
write:
  enabled: true
  allow_paths: ["src/**", "docs/**"]
  deny_paths: ["**/*.lock"]
"#;
    let expected = RepoConfig {
        trigger: "@helper".into(),
        review: ReviewSettings {
            enabled: false,
            on: vec![
                ReviewAction::Opened,
                ReviewAction::Reopened,
                ReviewAction::Synchronize,
            ],
            paths: globs(&["src/**"]),
            ignore_paths: globs(&["**/*.snap"]),
            skip_authors: vec!["dependabot".into(), "renovate".into()],
            skip_drafts: false,
            prompt: Some("Look for bugs only.".into()),
            approve_when_clean: false,
            incremental: false,
        },
        mention: MentionSettings {
            enabled: false,
            prompt: Some("Answer briefly.".into()),
            aliases: vec!["@claude".into()],
            on_issue_edited: true,
        },
        permissions: Permissions {
            allow_bots: true,
            allowed_users: vec!["alice".into()],
            reply_when_refused: false,
        },
        settings: RunSettings {
            max_turns: 40,
            timeout_seconds: 900,
            collapse_responses: false,
            allowed_tools: vec!["run_command".into()],
        },
        model: Some("openai/gpt-4.1".into()),
        mcp_servers: BTreeMap::from([
            (
                "docs".to_owned(),
                McpServer::Stdio {
                    command: "npx".into(),
                    args: vec!["-y".into(), "@acme/docs-mcp".into()],
                    env: BTreeMap::from([("DOCS_LANG".to_owned(), "en".to_owned())]),
                },
            ),
            (
                "search".to_owned(),
                McpServer::Http {
                    url: "https://mcp.example.com/mcp".into(),
                    headers: BTreeMap::from([("X-Team".to_owned(), "core".to_owned())]),
                },
            ),
        ]),
        write: WritePolicy::new(
            true,
            globs(&["src/**", "docs/**"]),
            PathSet::new(&["**/*.lock"], true).unwrap(),
        ),
    };
    assert_eq!(clean(text), expected);
}

#[test]
fn mcp_env_and_header_values_stay_out_of_debug_output() {
    let config = clean(
        "mcp_servers:\n  a: {command: x, env: {TOKEN: s3cr3t-env}}\n  b: {url: \"https://h\", headers: {Authorization: Bearer s3cr3t-header}}\n",
    );
    let shown = format!("{config:?}");
    assert!(
        shown.contains("TOKEN") && shown.contains("Authorization"),
        "{shown}"
    );
    assert!(!shown.contains("s3cr3t"), "{shown}");
}

#[test]
fn the_typescript_kodiai_keys_are_aliases() {
    let text = r#"
maxTurns: 12
timeoutSeconds: 600
review:
  skipAuthors: [bot-a]
  skipPaths: ["vendor/**"]
  autoApprove: false
  skipDrafts: false
  triggers:
    onOpened: false
    onReadyForReview: true
    onSynchronize: true
mention:
  allowedUsers: [carol]
  acceptClaudeAlias: true
permissions:
  allowBots: true
  allowedUsers: [dave]
settings:
  collapseResponses: false
  allowedTools: [run_command]
mcpServers:
  x: {type: stdio, command: ./x}
write:
  enabled: true
  allowPaths: ["lib/**"]
  denyPaths: ["*.md"]
"#;
    let config = clean(text);
    assert_eq!(config.settings.max_turns, 12);
    assert_eq!(config.settings.timeout_seconds, 600);
    assert!(!config.settings.collapse_responses);
    assert_eq!(config.settings.allowed_tools, ["run_command"]);
    assert_eq!(config.review.skip_authors, ["bot-a"]);
    assert_eq!(config.review.ignore_paths, globs(&["vendor/**"]));
    assert!(!config.review.approve_when_clean);
    assert!(!config.review.skip_drafts);
    assert_eq!(
        config.review.on,
        [ReviewAction::ReadyForReview, ReviewAction::Synchronize]
    );
    assert_eq!(config.permissions.allowed_users, ["dave", "carol"]);
    assert!(config.permissions.allow_bots);
    assert_eq!(config.mention.aliases, ["@claude"]);
    assert_eq!(config.mcp_servers.len(), 1);
    assert!(config.write.enabled);
    assert_eq!(config.write.allow_paths, globs(&["lib/**"]));
    assert!(config.write.may_write("lib/a.rs"));
    assert!(!config.write.may_write("lib/README.md"));
    assert!(!config.write.may_write("src/a.rs"));

    // The camelCase spelling inside `settings` works too.
    let config = clean("settings:\n  maxTurns: 7\n  timeoutSeconds: 60\n");
    assert_eq!(
        (config.settings.max_turns, config.settings.timeout_seconds),
        (7, 60)
    );
}

#[test]
fn both_places_of_max_turns_warn_and_settings_wins() {
    let parsed = parse("maxTurns: 5\nsettings:\n  max_turns: 9\n");
    assert_eq!(parsed.config.settings.max_turns, 9);
    assert_eq!(
        parsed.diagnostics,
        [diagnostic(
            Severity::Warning,
            1,
            "maxTurns",
            "`settings.max_turns` is set too, and wins"
        )]
    );
}

#[test]
fn unknown_keys_are_reported_with_their_lines_and_the_rest_is_used() {
    let text = "review:\n  skip_draft: true\n  enabled: false\nreveiw:\n  x: 1\nsettings:\n  max_turns: 3\n";
    let parsed = parse(text);
    assert!(!parsed.is_invalid());
    assert!(!parsed.config.review.enabled);
    assert_eq!(parsed.config.settings.max_turns, 3);
    assert_eq!(
        parsed.diagnostics,
        [
            diagnostic(
                Severity::Warning,
                2,
                "review.skip_draft",
                "unknown key, ignored; did you mean `skip_drafts`?"
            ),
            diagnostic(
                Severity::Warning,
                4,
                "reveiw",
                "unknown key, ignored; did you mean `review`?"
            ),
        ]
    );
    assert_eq!(render_comment(&parsed, "main"), None);
}

#[test]
fn typos_get_a_suggestion_at_their_level() {
    let parsed = parse(
        "settings:\n  maxturn: 3\nmcp_servers:\n  x:\n    comand: a\n    command: a\nwrite:\n  allow_path: []\n  enabeld: true\n",
    );
    let messages: Vec<(Option<String>, String)> = parsed
        .diagnostics
        .iter()
        .map(|d| (d.key.clone(), d.message.clone()))
        .collect();
    let hint = |key: &str, known: &str| {
        (
            Some(key.to_owned()),
            format!("unknown key, ignored; did you mean `{known}`?"),
        )
    };
    assert_eq!(
        messages,
        [
            hint("settings.maxturn", "max_turns"),
            hint("mcp_servers.x.comand", "command"),
            hint("write.allow_path", "allow_paths"),
            hint("write.enabeld", "enabled"),
        ]
    );
}

#[test]
fn a_wrong_type_names_the_key_and_line_and_the_defaults_apply() {
    let cases: &[(&str, Diagnostic)] = &[
        (
            "review:\n  enabled: true\nsettings:\n  timeout_seconds: soon\n",
            diagnostic(
                Severity::Error,
                4,
                "settings.timeout_seconds",
                "expected a whole number, found \"soon\"",
            ),
        ),
        (
            "mention:\n  enabled: sometimes\n",
            diagnostic(
                Severity::Error,
                2,
                "mention.enabled",
                "expected true or false, found \"sometimes\"",
            ),
        ),
        (
            "review:\n  on: [opened, closed]\n",
            diagnostic(
                Severity::Error,
                2,
                "review.on[1]",
                "unknown variant `closed`, expected one of opened, ready_for_review, reopened, synchronize",
            ),
        ),
        (
            "permissions:\n  allowed_users: alice\n",
            diagnostic(
                Severity::Error,
                2,
                "permissions.allowed_users",
                "expected a YAML sequence (a list)",
            ),
        ),
    ];
    for (text, expected) in cases {
        let parsed = parse(text);
        assert_eq!(parsed.config, RepoConfig::default(), "{text}");
        assert!(parsed.is_invalid());
        let first = &parsed.diagnostics[0];
        if expected.key.as_deref() == Some("permissions.allowed_users") {
            // The parser's own wording for a scalar where a list belongs: only its place and
            // key are ours.
            assert_eq!(
                (first.severity, first.line, first.key.as_deref()),
                (Severity::Error, Some(2), Some("permissions.allowed_users")),
                "{first:?}"
            );
        } else {
            assert_eq!(first, expected, "{text}");
        }
    }
}

#[test]
fn bad_values_name_the_key_as_written_and_its_line() {
    let cases: &[(&str, Diagnostic)] = &[
        (
            "settings:\n  max_turns: 500\n",
            diagnostic(
                Severity::Error,
                2,
                "settings.max_turns",
                "expected a whole number from 1 to 200, found 500",
            ),
        ),
        (
            "settings:\n  maxTurns: 0\n",
            diagnostic(
                Severity::Error,
                2,
                "settings.maxTurns",
                "expected a whole number from 1 to 200, found 0",
            ),
        ),
        (
            "review:\n  skipPaths:\n    - ok/**\n    - 'a[b'\n",
            diagnostic(
                Severity::Error,
                4,
                "review.skipPaths[1]",
                "`a[b` is not a valid glob: unclosed character class; missing ']'",
            ),
        ),
        (
            "trigger: kodiai\n",
            diagnostic(
                Severity::Error,
                1,
                "trigger",
                "expected `@` and a login of letters, digits, `-` or `_` (at most 40), e.g. `@kodiai`; found \"kodiai\"",
            ),
        ),
        (
            "model: gpt-4\n",
            diagnostic(
                Severity::Error,
                1,
                "model",
                "expected `provider/model`, e.g. `anthropic/claude-sonnet-4-5`, or empty for the server's default; found \"gpt-4\"",
            ),
        ),
        (
            "mcp_servers:\n  x:\n    command: a\n    url: https://b\n",
            diagnostic(
                Severity::Error,
                2,
                "mcp_servers.x",
                "set `command` (stdio) or `url` (http), not both",
            ),
        ),
        (
            "mcp_servers:\n  x:\n    url: ftp://b\n",
            diagnostic(
                Severity::Error,
                3,
                "mcp_servers.x.url",
                "expected an http or https URL, found \"ftp://b\"",
            ),
        ),
        (
            "write:\n  denyPaths: ['']\n",
            diagnostic(
                Severity::Error,
                2,
                "write.denyPaths[0]",
                "an empty pattern matches nothing; remove it",
            ),
        ),
    ];
    for (text, expected) in cases {
        let parsed = parse(text);
        assert_eq!(parsed.diagnostics, std::slice::from_ref(expected), "{text}");
        assert_eq!(parsed.config, RepoConfig::default(), "{text}");
    }
}

#[test]
fn an_alias_and_its_key_together_are_an_error() {
    let parsed = parse("review:\n  skipAuthors: [a]\n  skip_authors: [b]\n");
    assert!(parsed.is_invalid());
    assert!(
        parsed.diagnostics[0].message.contains("duplicate field"),
        "{:?}",
        parsed.diagnostics
    );
}

#[test]
fn errors_come_before_warnings() {
    let parsed = parse("zzz: 1\nsettings:\n  max_turns: -1\n");
    assert_eq!(
        parsed
            .diagnostics
            .iter()
            .map(|d| (d.severity, d.line))
            .collect::<Vec<_>>(),
        [(Severity::Error, Some(3)), (Severity::Warning, Some(1))]
    );
}

#[test]
fn a_file_that_is_not_a_mapping_is_invalid() {
    for text in ["- a\n- b\n", "just words\n", "42\n"] {
        let parsed = parse(text);
        assert!(parsed.is_invalid(), "{text}");
        assert_eq!(parsed.diagnostics[0].line, Some(1));
    }
}

#[test]
fn broken_yaml_is_reported_with_its_line() {
    let parsed = parse("review:\n  paths: [src/**\nmention: {}\n");
    assert!(parsed.is_invalid());
    assert_eq!(parsed.diagnostics.len(), 1);
    assert!(parsed.diagnostics[0].line.is_some());
}

#[test]
fn an_alias_bomb_is_refused_quickly() {
    // "Billion laughs": each line ten times the one before; written out it is 10^9 items.
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let prev = format!("*a{}", i - 1);
        let items = [prev.as_str(); 10].join(", ");
        text.push_str(&format!("a{i}: &a{i} [{items}]\n"));
    }
    let started = Instant::now();
    let parsed = parse(&text);
    let elapsed = started.elapsed();
    assert!(parsed.is_invalid());
    assert!(
        parsed.diagnostics[0]
            .message
            .contains("too large or too complex"),
        "{:?}",
        parsed.diagnostics
    );
    // Not a timing assertion of performance: a bomb that was expanded would take minutes
    // and gigabytes; this guards against the budget being switched off.
    assert!(elapsed.as_secs() < 30, "{elapsed:?}");
}

#[test]
fn deep_nesting_is_refused() {
    let deep = format!("x: {}{}\n", "[".repeat(200), "]".repeat(200));
    let parsed = parse(&deep);
    assert!(parsed.is_invalid());
    assert!(
        parsed.diagnostics[0].message.contains("Depth"),
        "{:?}",
        parsed.diagnostics
    );
    let mut block = String::new();
    for depth in 0..40 {
        block.push_str(&format!("{}k{depth}:\n", "  ".repeat(depth)));
    }
    assert!(parse(&block).is_invalid());
    // The deepest real key is well inside the limit.
    clean("mcp_servers:\n  a:\n    command: x\n    env:\n      K: v\n");
}

#[test]
fn a_file_over_the_limit_is_refused_unread() {
    let text = format!("review:\n  prompt: \"{}\"\n", "a".repeat(MAX_FILE_BYTES));
    let parsed = parse(&text);
    assert_eq!(
        parsed.diagnostics,
        [Diagnostic {
            severity: Severity::Error,
            line: None,
            key: None,
            message: format!(
                "the file is larger than {MAX_FILE_BYTES} bytes, the most kodiai reads"
            ),
        }]
    );
    assert_eq!(parsed.config, RepoConfig::default());
}

#[test]
fn more_than_one_document_is_refused() {
    assert!(parse("review: {}\n---\nmention: {}\n").is_invalid());
}

#[test]
fn review_paths_and_authors_filter() {
    let config = clean(
        "review:\n  paths: ['src/**', '*.md']\n  ignore_paths: ['src/gen/**']\n  skip_authors: [Dependabot]\n",
    );
    let review = &config.review;
    assert!(review.wants_path("src/lib.rs"));
    assert!(review.wants_path("docs/x.md"));
    assert!(!review.wants_path("src/gen/a.rs"));
    assert!(!review.wants_path("tests/a.rs"));
    assert!(!review.wants_author("dependabot"));
    assert!(review.wants_author("alice"));
    assert!(RepoConfig::default().review.wants_path("anything/at/all"));
}

#[test]
fn the_comment_names_the_problem_and_keeps_mentions_inert() {
    let parsed =
        parse("trigger: \"@everyone ```\"\nsettings:\n  max_turns: 900\nunknown_thing: 1\n");
    let comment = render_comment(&parsed, "main").unwrap();
    insta::assert_snapshot!(comment);
    assert!(comment.starts_with(COMMENT_MARKER));
    // The quoted `@everyone` sits inside a fence longer than any backtick run in it.
    assert!(comment.contains("````text\n"));
}

#[test]
fn the_check_output_is_one_line_per_finding_and_a_verdict() {
    let parsed = parse("foo: 1\nsettings:\n  max_turns: 0\n");
    assert_eq!(
        render_check("repo/.kodiai.yml", &parsed),
        "repo/.kodiai.yml:3: error: settings.max_turns: expected a whole number from 1 to 200, found 0\n\
         repo/.kodiai.yml:1: warning: foo: unknown key, ignored\n\
         repo/.kodiai.yml: invalid: kodiai would use the default settings and say so in a comment\n"
    );
    assert_eq!(
        render_check("f", &parse("foo: 1\n")),
        "f:1: warning: foo: unknown key, ignored\nf: valid, with 1 warning\n"
    );
    assert_eq!(render_check("f", &parse("")), "f: valid\n");
}

#[test]
fn the_schema_describes_every_section_and_alias() {
    let schema = json_schema();
    assert_eq!(schema["$id"], "/schema/kodiai.json");
    let properties = schema["properties"].as_object().unwrap();
    for key in [
        "trigger",
        "review",
        "mention",
        "permissions",
        "settings",
        "model",
        "mcp_servers",
        "write",
        "maxTurns",
        "timeoutSeconds",
    ] {
        assert!(properties.contains_key(key), "{key}");
    }
    // Ranges and defaults are on the keys; no key claims a default of null.
    let max_turns = &schema["$defs"]["RawSettings"]["properties"]["max_turns"];
    assert_eq!(
        (
            &max_turns["minimum"],
            &max_turns["maximum"],
            &max_turns["default"]
        ),
        (
            &serde_json::json!(1),
            &serde_json::json!(200),
            &serde_json::json!(25)
        )
    );
    let text = schema.to_string();
    assert!(!text.contains("\"default\":null"));
    for needle in [
        "approve_when_clean",
        "incremental",
        "onSynchronize",
        "acceptClaudeAlias",
        "ready_for_review",
        "deny_paths",
        "**/*credentials*",
    ] {
        assert!(text.contains(needle), "{needle}");
    }
}
