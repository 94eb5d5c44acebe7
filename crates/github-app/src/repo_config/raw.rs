//! `.kodiai.yml` as written: every key optional, the camelCase spellings of the TypeScript
//! kodiai accepted beside ours. Types only: serde reads it (type errors carry their line), and
//! schemars turns it into the JSON Schema at `/schema/kodiai.json`. Values are checked and
//! turned into [`super::RepoConfig`] in `super::validate`.

use std::collections::BTreeMap;

use std::fmt;

use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// A repository's kodiai configuration (`.kodiai.yml` on the default branch). Every key is
/// optional; unknown keys are reported and ignored.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(title = "kodiai repository configuration (.kodiai.yml)")]
pub struct RawConfig {
    /// The handle that calls kodiai in comments. Default `@kodiai`.
    #[schemars(extend("default" = "@kodiai"), example = "@kodiai")]
    pub trigger: Option<String>,
    pub review: Option<RawReview>,
    pub mention: Option<RawMention>,
    pub permissions: Option<RawPermissions>,
    pub settings: Option<RawSettings>,
    /// `provider/model` for this repository (e.g. `anthropic/claude-sonnet-4-5`); empty: the
    /// server's default.
    #[schemars(extend("default" = ""))]
    pub model: Option<String>,
    /// Extra MCP servers for the agent, by name. Read only from the default branch.
    #[serde(alias = "mcpServers")]
    pub mcp_servers: Option<BTreeMap<String, RawMcpServer>>,
    /// Write mode: whether kodiai may commit, and which paths.
    pub write: Option<RawWrite>,
    /// The TypeScript kodiai's place for `settings.max_turns`.
    #[serde(rename = "maxTurns")]
    #[schemars(range(min = 1, max = 200))]
    pub max_turns_top: Option<Int>,
    /// The TypeScript kodiai's place for `settings.timeout_seconds`.
    #[serde(rename = "timeoutSeconds")]
    #[schemars(range(min = 10, max = 7200))]
    pub timeout_seconds_top: Option<Int>,
}

/// Pull-request reviews.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
pub struct RawReview {
    /// Review pull requests at all. Default `true`.
    #[schemars(extend("default" = true))]
    pub enabled: Option<Flag>,
    /// The pull-request actions that start a review. Default `[opened, ready_for_review]`;
    /// add `synchronize` for incremental reviews of new commits.
    #[schemars(extend("default" = ["opened", "ready_for_review"]))]
    pub on: Option<Vec<ReviewAction>>,
    /// The TypeScript kodiai's way to say `on`.
    pub triggers: Option<RawReviewTriggers>,
    /// Globs of the files to review; empty: all.
    pub paths: Option<Vec<String>>,
    /// Globs of files not to review. Lock files and generated files are skipped anyway.
    #[serde(alias = "skipPaths")]
    pub ignore_paths: Option<Vec<String>>,
    /// Logins whose pull requests are not reviewed.
    #[serde(alias = "skipAuthors")]
    pub skip_authors: Option<Vec<String>>,
    /// Skip draft pull requests until they are ready for review. Default `true`.
    #[serde(alias = "skipDrafts")]
    #[schemars(extend("default" = true))]
    pub skip_drafts: Option<Flag>,
    /// Replaces the review instructions.
    #[schemars(length(max = 20000))]
    pub prompt: Option<String>,
    /// Approve, without a comment, a pull request where nothing was found. Default `true`.
    #[serde(alias = "autoApprove")]
    #[schemars(extend("default" = true))]
    pub approve_when_clean: Option<Flag>,
    /// On `synchronize`, review only the commits pushed since the last review, and never post
    /// a finding again that an earlier review of the pull request posted. Default `true`.
    #[schemars(extend("default" = true))]
    pub incremental: Option<Flag>,
}

/// A pull-request action that can start a review.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ReviewAction {
    Opened,
    ReadyForReview,
    Reopened,
    Synchronize,
}

/// `review.triggers` of the TypeScript kodiai: each flag adds its action to `review.on` or
/// takes it out.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
pub struct RawReviewTriggers {
    #[serde(rename = "onOpened")]
    pub on_opened: Option<Flag>,
    #[serde(rename = "onReadyForReview")]
    pub on_ready_for_review: Option<Flag>,
    #[serde(rename = "onSynchronize")]
    pub on_synchronize: Option<Flag>,
    #[serde(rename = "onReopened")]
    pub on_reopened: Option<Flag>,
}

/// Answers to mentions of the trigger.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
pub struct RawMention {
    /// Answer mentions at all. Default `true`.
    #[schemars(extend("default" = true))]
    pub enabled: Option<Flag>,
    /// Added to the instructions of mention answers.
    #[schemars(length(max = 20000))]
    pub prompt: Option<String>,
    /// More handles that call kodiai, e.g. `@claude`.
    pub aliases: Option<Vec<String>>,
    /// The TypeScript kodiai's switch for the `@claude` alias.
    #[serde(rename = "acceptClaudeAlias")]
    pub accept_claude_alias: Option<Flag>,
    /// Also answer a mention added by editing an issue (`issues` `edited`). Default `false`.
    #[serde(alias = "onIssueEdited")]
    #[schemars(extend("default" = false))]
    pub on_issue_edited: Option<Flag>,
    /// The TypeScript kodiai's place for `permissions.allowed_users`.
    #[serde(rename = "allowedUsers")]
    pub allowed_users: Option<Vec<String>>,
}

/// Who may call kodiai.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
pub struct RawPermissions {
    /// Let bot accounts call kodiai. Default `false`.
    #[serde(alias = "allowBots")]
    #[schemars(extend("default" = false))]
    pub allow_bots: Option<Flag>,
    /// Logins that may call kodiai besides those with write access; empty: anyone with write
    /// access.
    #[serde(alias = "allowedUsers")]
    pub allowed_users: Option<Vec<String>>,
    /// Answer a refused caller once per thread, politely (`true`), or say nothing. Default
    /// `true`.
    #[serde(alias = "replyWhenRefused")]
    #[schemars(extend("default" = true))]
    pub reply_when_refused: Option<Flag>,
}

/// How the agent runs.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
pub struct RawSettings {
    /// Model turns per job, at most. Default 25.
    #[serde(alias = "maxTurns")]
    #[schemars(range(min = 1, max = 200), extend("default" = 25))]
    pub max_turns: Option<Int>,
    /// Seconds per job, at most. Default 300.
    #[serde(alias = "timeoutSeconds")]
    #[schemars(range(min = 10, max = 7200), extend("default" = 300))]
    pub timeout_seconds: Option<Int>,
    /// Put long answers inside `<details>`. Default `true`.
    #[serde(alias = "collapseResponses")]
    #[schemars(extend("default" = true))]
    pub collapse_responses: Option<Flag>,
    /// Extra tools for the agent, e.g. `run_command`.
    #[serde(alias = "allowedTools")]
    pub allowed_tools: Option<Vec<String>>,
}

/// An MCP server: `command` (stdio) or `url` (streamable HTTP).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
pub struct RawMcpServer {
    /// `stdio` or `http`; implied by `command` or `url` when left out.
    #[serde(rename = "type")]
    pub transport: Option<McpTransport>,
    /// The program to start (stdio).
    pub command: Option<String>,
    /// Its arguments (stdio).
    pub args: Vec<String>,
    /// Its environment (stdio); it gets no other variables of the host.
    pub env: BTreeMap<String, String>,
    /// The server's URL (http).
    pub url: Option<String>,
    /// Headers sent with every request (http).
    pub headers: BTreeMap<String, String>,
}

/// How kodiai talks to an MCP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum McpTransport {
    Stdio,
    Http,
}

/// Write mode.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
pub struct RawWrite {
    /// Let kodiai commit and push. Default `false`.
    #[schemars(extend("default" = false))]
    pub enabled: Option<Flag>,
    /// When set, every written path must match one of these globs.
    #[serde(alias = "allowPaths")]
    pub allow_paths: Option<Vec<String>>,
    /// Written paths must match none of these globs (deny wins over allow); replaces the
    /// default list. `.git/` is denied whatever this says.
    #[serde(alias = "denyPaths")]
    #[schemars(extend("default" = [".github/", ".git/", ".kodiai.yml", ".env", ".env.*",
        "**/*.pem", "**/*.key", "**/*credentials*", "**/*secret*"]))]
    pub deny_paths: Option<Vec<String>>,
}

/// A whole number, read so that a wrong value is named (`found "many"`) rather than reported
/// as the parser's "invalid i64".
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[schemars(transparent, inline)]
pub struct Int(pub i64);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(IntVisitor)
    }
}

struct IntVisitor;

impl Visitor<'_> for IntVisitor {
    type Value = Int;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a whole number")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
        Ok(Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
        Ok(Int(i64::try_from(v).unwrap_or(i64::MAX)))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Int, E> {
        Ok(Int(i64::try_from(v).unwrap_or(if v < 0 {
            i64::MIN
        } else {
            i64::MAX
        })))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Int, E> {
        Ok(Int(i64::try_from(v).unwrap_or(i64::MAX)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Int, E> {
        Err(E::custom(format_args!(
            "expected a whole number, found {v}"
        )))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Int, E> {
        Err(E::custom(format_args!(
            "expected a whole number, found {v:?}"
        )))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Int, E> {
        Err(E::custom(format_args!(
            "expected a whole number, found {v}"
        )))
    }
}

/// `true` or `false`, read so that a wrong value is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[schemars(transparent, inline)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FlagVisitor)
    }
}

struct FlagVisitor;

impl Visitor<'_> for FlagVisitor {
    type Value = Flag;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("true or false")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Flag, E> {
        Ok(Flag(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Flag, E> {
        Err(E::custom(format_args!("expected true or false, found {v}")))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Flag, E> {
        Err(E::custom(format_args!("expected true or false, found {v}")))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Flag, E> {
        Err(E::custom(format_args!("expected true or false, found {v}")))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Flag, E> {
        Err(E::custom(format_args!(
            "expected true or false, found {v:?}"
        )))
    }
}
