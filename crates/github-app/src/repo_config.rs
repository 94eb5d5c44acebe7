//! A repository's own settings: `.kodiai.yml` (SPEC §3), read from the default branch.
//!
//! The file comes from the repository, so it is untrusted input: [`parse`] refuses a file over
//! [`MAX_FILE_BYTES`], reads it with `serde-saphyr` under a budget (depth, nodes, aliases, one
//! document) so that alias bombs and deep nesting fail fast, then checks every value. It
//! never fails: it returns the configuration to use and the [`Diagnostic`]s, each with its
//! line. Unknown keys are warnings; any error makes the whole file invalid, and the defaults
//! are used (a half-read file could turn on what its author meant to keep off).
//! [`render_comment`] is the comment that tells the repository why, and `kodiai config check
//! FILE` prints the same messages ([`render_check`]).
//!
//! The camelCase keys of the TypeScript kodiai are accepted where SPEC §3 says so
//! (`maxTurns`, `review.skipPaths`, `review.triggers.onOpened`, `mention.allowedUsers`,
//! `write.denyPaths`, …). [`json_schema`] is the JSON Schema served at `/schema/kodiai.json`.

mod paths;
mod raw;
mod tree;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use serde::Serialize;
use serde_saphyr::{Budget, MessageFormatter, Options, UserMessageFormatter};

pub use paths::{DEFAULT_DENY_PATHS, PathSet, WritePolicy, WriteRefusal, default_deny_paths};
pub use raw::{McpTransport, ReviewAction};
pub use tree::KeyPath;

use raw::RawConfig;
use tree::{Node, Segment};

/// The file's name in the repository.
pub const FILE_NAME: &str = ".kodiai.yml";

/// Larger files are refused unread. Real ones are a few hundred bytes; prompts make them
/// longer, not this long.
pub const MAX_FILE_BYTES: usize = 64 * 1024;

/// Deepest nesting of mappings and sequences; the deepest real key
/// (`mcp_servers.NAME.env.KEY`) is at 4.
pub const MAX_DEPTH: usize = 16;

/// Handles of the trigger and aliases: `@` and a GitHub login (letters, digits, `-`, `_`).
const MAX_HANDLE_CHARS: usize = 40;
const MAX_PROMPT_CHARS: usize = 20_000;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The file is used; this part of it is not (an unknown key).
    Warning,
    /// The file is not used at all: the defaults apply.
    Error,
}

/// One finding about the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// 1-based; `None` when the problem has no place (the file is too large).
    pub line: Option<u64>,
    /// The key, as the file spells it (`settings.maxTurns`, `review.paths[2]`); `None` for the
    /// file as a whole.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "`{key}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// What [`parse`] found: the configuration to use and what is wrong with the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The file's settings, or the defaults when it has an error.
    pub config: RepoConfig,
    /// Errors first, then warnings, each group by line.
    pub diagnostics: Vec<Diagnostic>,
}

impl Parsed {
    /// The file had an error, so `config` is the defaults.
    pub fn is_invalid(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }
}

/// A repository's configuration, checked, with the defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepoConfig {
    /// The handle that calls kodiai, e.g. `@kodiai`.
    pub trigger: String,
    pub review: ReviewSettings,
    pub mention: MentionSettings,
    pub permissions: Permissions,
    pub settings: RunSettings,
    /// `provider/model` for this repository; `None`: the server's default.
    pub model: Option<String>,
    /// Extra MCP servers by name.
    pub mcp_servers: BTreeMap<String, McpServer>,
    pub write: WritePolicy,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReviewSettings {
    pub enabled: bool,
    /// The pull-request actions that start a review, sorted, no duplicates.
    pub on: Vec<ReviewAction>,
    /// Files to review; empty: all.
    pub paths: PathSet,
    /// Files not to review.
    pub ignore_paths: PathSet,
    /// Logins whose pull requests are not reviewed (compared without case).
    pub skip_authors: Vec<String>,
    pub skip_drafts: bool,
    /// Replaces the review instructions.
    pub prompt: Option<String>,
    pub approve_when_clean: bool,
    /// On `synchronize`: review only what changed since the last reviewed commit, and drop
    /// findings an earlier review already posted.
    pub incremental: bool,
}

impl ReviewSettings {
    /// Whether `path` is reviewed under `paths` and `ignore_paths`.
    pub fn wants_path(&self, path: &str) -> bool {
        (self.paths.is_empty() || self.paths.is_match(path)) && !self.ignore_paths.is_match(path)
    }

    /// Whether pull requests by `login` are reviewed.
    pub fn wants_author(&self, login: &str) -> bool {
        !self
            .skip_authors
            .iter()
            .any(|a| a.eq_ignore_ascii_case(login))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MentionSettings {
    pub enabled: bool,
    pub prompt: Option<String>,
    /// More handles that call kodiai (`@claude`), besides the trigger.
    pub aliases: Vec<String>,
    /// Answer a mention added by editing an issue.
    pub on_issue_edited: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Permissions {
    pub allow_bots: bool,
    /// Logins that may call kodiai without write access (compared without case).
    pub allowed_users: Vec<String>,
    /// Answer a refused caller once per thread (`true`), or say nothing.
    pub reply_when_refused: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSettings {
    pub max_turns: u32,
    pub timeout_seconds: u32,
    pub collapse_responses: bool,
    /// Extra tools, e.g. `run_command`.
    pub allowed_tools: Vec<String>,
}

impl RunSettings {
    /// Whether `allowed_tools` names `tool`.
    pub fn allows(&self, tool: &str) -> bool {
        self.allowed_tools.iter().any(|t| t == tool)
    }
}

/// An MCP server of the repository. `Debug` shows the names of its environment variables and
/// headers, not their values: those are where tokens go.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum McpServer {
    /// A child process that speaks MCP on stdin and stdout.
    Stdio {
        command: String,
        args: Vec<String>,
        /// Its whole environment: nothing of the host's is passed on.
        env: BTreeMap<String, String>,
    },
    /// A streamable-HTTP server.
    Http {
        url: String,
        headers: BTreeMap<String, String>,
    },
}

impl fmt::Debug for McpServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            McpServer::Stdio { command, args, env } => f
                .debug_struct("Stdio")
                .field("command", command)
                .field("args", args)
                .field("env", &env.keys().collect::<Vec<_>>())
                .finish(),
            McpServer::Http { url, headers } => f
                .debug_struct("Http")
                .field("url", url)
                .field("headers", &headers.keys().collect::<Vec<_>>())
                .finish(),
        }
    }
}

impl Default for RepoConfig {
    fn default() -> Self {
        Self {
            trigger: "@kodiai".to_owned(),
            review: ReviewSettings {
                enabled: true,
                on: vec![ReviewAction::Opened, ReviewAction::ReadyForReview],
                paths: PathSet::empty(),
                ignore_paths: PathSet::empty(),
                skip_authors: Vec::new(),
                skip_drafts: true,
                prompt: None,
                approve_when_clean: true,
                incremental: true,
            },
            mention: MentionSettings {
                enabled: true,
                prompt: None,
                aliases: Vec::new(),
                on_issue_edited: false,
            },
            permissions: Permissions {
                allow_bots: false,
                allowed_users: Vec::new(),
                reply_when_refused: true,
            },
            settings: RunSettings {
                max_turns: 25,
                timeout_seconds: 300,
                collapse_responses: true,
                allowed_tools: Vec::new(),
            },
            model: None,
            mcp_servers: BTreeMap::new(),
            write: WritePolicy::default(),
        }
    }
}

/// Reads `.kodiai.yml` text. Never fails: an invalid file gives the defaults and at least one
/// error [`Diagnostic`]. An empty file (or one with only comments) is the defaults.
pub fn parse(text: &str) -> Parsed {
    let mut diagnostics = Vec::new();
    let config = match read(text, &mut diagnostics) {
        Some(config) if !diagnostics.iter().any(|d| d.severity == Severity::Error) => config,
        _ => RepoConfig::default(),
    };
    diagnostics.sort_by_key(|d| (std::cmp::Reverse(d.severity), d.line, d.key.clone()));
    Parsed {
        config,
        diagnostics,
    }
}

fn read(text: &str, diagnostics: &mut Vec<Diagnostic>) -> Option<RepoConfig> {
    if text.len() > MAX_FILE_BYTES {
        diagnostics.push(Diagnostic {
            severity: Severity::Error,
            line: None,
            key: None,
            message: format!(
                "the file is larger than {MAX_FILE_BYTES} bytes, the most kodiai reads"
            ),
        });
        return None;
    }
    if text.trim().is_empty() {
        return Some(RepoConfig::default());
    }

    // First pass: the keys and their lines. Syntax errors and budget breaches stop here.
    let tree: Node = match serde_saphyr::from_str_with_options(text, options()) {
        Ok(node) => node,
        Err(e) => {
            diagnostics.push(yaml_error(&e, None));
            return None;
        }
    };
    if matches!(tree, Node::Scalar) && is_null_document(text) {
        return Some(RepoConfig::default());
    }
    if matches!(tree, Node::Scalar) {
        diagnostics.push(Diagnostic {
            severity: Severity::Error,
            line: Some(1),
            key: None,
            message: "expected a mapping of keys (`review:`, `mention:`, …), found a single value"
                .to_owned(),
        });
        return None;
    }
    if matches!(tree, Node::Seq(_)) {
        diagnostics.push(Diagnostic {
            severity: Severity::Error,
            line: Some(1),
            key: None,
            message: "expected a mapping of keys (`review:`, `mention:`, …), found a list"
                .to_owned(),
        });
        return None;
    }

    // Second pass: the typed file. Unknown keys are collected on the way.
    let mut ignored: Vec<KeyPath> = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| {
        let mut on_ignored = |path: serde_ignored::Path<'_>| ignored.push(ignored_path(&path));
        let de = serde_ignored::Deserializer::new(de, &mut on_ignored);
        <RawConfig as serde::Deserialize>::deserialize(serde_path_to_error::Deserializer::new(
            de, &mut track,
        ))
    });
    for path in ignored {
        let found = tree.find(&path, &[]);
        let message = match suggest(&path) {
            Some(known) => format!("unknown key, ignored; did you mean `{known}`?"),
            None => "unknown key, ignored".to_owned(),
        };
        diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            line: found.as_ref().map(|f| f.line),
            key: Some(path.to_string()),
            message,
        });
    }
    let raw = match result {
        Ok(raw) => raw,
        Err(e) => {
            let path = error_path(&track.path());
            diagnostics.push(yaml_error(&e, Some(&path)));
            return None;
        }
    };
    validate::to_config(raw, &tree, diagnostics)
}

/// The known key closest to the unknown last key of `path` (a typo like `skip_draft`), from
/// the keys the schema has at that place.
fn suggest(path: &KeyPath) -> Option<String> {
    let (Segment::Key(unknown), parent) = path.0.split_last()? else {
        return None;
    };
    let schema = json_schema();
    let resolve = |mut node: &'static serde_json::Value| {
        // `Option<Section>` is `anyOf: [{$ref}, {type: null}]`; follow the reference.
        for _ in 0..4 {
            if let Some(first) = node.get("anyOf").and_then(|a| a.get(0)) {
                node = first;
            } else if let Some(name) = node
                .get("$ref")
                .and_then(|r| r.as_str())
                .and_then(|r| r.strip_prefix("#/$defs/"))
            {
                node = schema.get("$defs")?.get(name)?;
            } else {
                break;
            }
        }
        Some(node)
    };
    let mut node = resolve(schema)?;
    for segment in parent {
        node = match segment {
            // A named field, or any key of a map (`mcp_servers.NAME`).
            Segment::Key(key) => resolve(
                node.get("properties")
                    .and_then(|p| p.get(key))
                    .or_else(|| node.get("additionalProperties"))?,
            )?,
            Segment::Index(_) => resolve(node.get("items")?)?,
        };
    }
    let fold = |s: &str| s.replace(['_', '-'], "").to_ascii_lowercase();
    let wanted = fold(unknown);
    node.get("properties")?
        .as_object()?
        .keys()
        .map(|known| (strsim::levenshtein(&wanted, &fold(known)), known))
        .filter(|(distance, known)| *distance <= 2.min(known.len() / 3).max(1))
        .min()
        .map(|(_, known)| known.clone())
}

fn options() -> Options {
    let mut budget = Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.max_documents = 1;
    budget.max_nodes = 20_000;
    budget.max_events = 50_000;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_total_scalar_bytes = MAX_FILE_BYTES;
    budget.max_recorded_anchor_events = 50_000;
    budget.max_recorded_anchor_bytes = 4 * MAX_FILE_BYTES;
    budget.max_reader_input_bytes = Some(MAX_FILE_BYTES);
    budget.max_merge_keys = 100;
    let mut options = Options::default();
    options.budget = Some(budget);
    options.with_snippet = false;
    // An alias may not replay more than the file could hold written out twice over.
    options.alias_limits.max_total_replayed_events = 20_000;
    options
}

/// `~`, `null` or an empty document: no settings.
fn is_null_document(text: &str) -> bool {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty() && *l != "---" && *l != "...")
        .all(|l| l == "~" || l.eq_ignore_ascii_case("null"))
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> KeyPath {
    fn walk(path: &serde_ignored::Path<'_>, out: &mut Vec<Segment>) {
        match path {
            serde_ignored::Path::Root => {}
            serde_ignored::Path::Seq { parent, index } => {
                walk(parent, out);
                out.push(Segment::Index(*index));
            }
            serde_ignored::Path::Map { parent, key } => {
                walk(parent, out);
                out.push(Segment::Key(key.clone()));
            }
            serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => walk(parent, out),
        }
    }
    let mut segments = Vec::new();
    walk(path, &mut segments);
    KeyPath(segments)
}

fn error_path(path: &serde_path_to_error::Path) -> KeyPath {
    KeyPath(
        path.iter()
            .filter_map(|segment| match segment {
                serde_path_to_error::Segment::Seq { index } => Some(Segment::Index(*index)),
                serde_path_to_error::Segment::Map { key } => Some(Segment::Key(key.clone())),
                serde_path_to_error::Segment::Enum { .. }
                | serde_path_to_error::Segment::Unknown => None,
            })
            .collect(),
    )
}

/// A parse error as a diagnostic: the parser's message (without its own "at line" suffix),
/// its line, and the key when known.
fn yaml_error(error: &serde_saphyr::Error, path: Option<&KeyPath>) -> Diagnostic {
    let message = UserMessageFormatter.format_message(error.without_snippet());
    let message: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    Diagnostic {
        severity: Severity::Error,
        line: error.location().map(|l| l.line()).filter(|l| *l > 0),
        key: path.filter(|p| !p.0.is_empty()).map(KeyPath::to_string),
        message,
    }
}

/// The JSON Schema of `.kodiai.yml` (draft 2020-12), built once.
pub fn json_schema() -> &'static serde_json::Value {
    static SCHEMA: OnceLock<serde_json::Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut schema = serde_json::to_value(schemars::schema_for!(RawConfig))
            .unwrap_or(serde_json::Value::Null);
        drop_null_defaults(&mut schema);
        if let Some(object) = schema.as_object_mut() {
            object.insert(
                "$id".to_owned(),
                serde_json::Value::String("/schema/kodiai.json".to_owned()),
            );
        }
        schema
    })
}

/// `"default": null` is what schemars says of a key without a default of its own (every key
/// is optional); the real defaults are written on the keys.
fn drop_null_defaults(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(object) => {
            if object
                .get("default")
                .is_some_and(serde_json::Value::is_null)
            {
                object.remove("default");
            }
            object.values_mut().for_each(drop_null_defaults);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_null_defaults),
        _ => {}
    }
}

/// The hidden marker of the comment that reports a bad `.kodiai.yml`, so that a later run
/// finds it and updates it instead of posting another.
pub const COMMENT_MARKER: &str = "<!-- kodiai:config-error:.kodiai.yml -->";

/// The comment that tells a repository its `.kodiai.yml` was not used, or `None` when the file
/// had no error. `branch` is the default branch it was read from. The messages go in a code
/// block: they quote the file, and a quoted `@someone` must not notify anyone.
pub fn render_comment(parsed: &Parsed, branch: &str) -> Option<String> {
    if !parsed.is_invalid() {
        return None;
    }
    let errors = parsed
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let lines: Vec<String> = parsed
        .diagnostics
        .iter()
        .map(|d| format!("{FILE_NAME}:{}", check_line(d)))
        .collect();
    let body = lines.join("\n");
    let fence = "`".repeat(longest_backtick_run(&body).max(2) + 1);
    let branch: String = branch
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_./".contains(*c))
        .collect();
    let problems = if errors == 1 { "a problem" } else { "problems" };
    Some(format!(
        "{COMMENT_MARKER}\n\
         **kodiai could not use `{FILE_NAME}`** from `{branch}`: it has {problems}, so this run \
         uses the default settings.\n\n\
         {fence}text\n{body}\n{fence}\n\n\
         Fix the file on `{branch}`; `kodiai config check {FILE_NAME}` prints the same messages, \
         and the schema is at `/schema/kodiai.json`.\n"
    ))
}

fn longest_backtick_run(text: &str) -> usize {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    longest
}

/// `LINE: error: KEY: MESSAGE`, the part after the file name in `config check` and in the
/// comment.
fn check_line(d: &Diagnostic) -> String {
    let mut line = String::new();
    if let Some(n) = d.line {
        line.push_str(&format!("{n}:"));
    }
    line.push_str(match d.severity {
        Severity::Error => " error: ",
        Severity::Warning => " warning: ",
    });
    if let Some(key) = &d.key {
        line.push_str(key);
        line.push_str(": ");
    }
    line.push_str(&d.message);
    line
}

/// What `kodiai config check FILE` prints: one line per finding, `FILE:LINE: error: KEY:
/// MESSAGE`, then a verdict. Exit with 2 when [`Parsed::is_invalid`].
pub fn render_check(file: &str, parsed: &Parsed) -> String {
    let mut out = String::new();
    for d in &parsed.diagnostics {
        out.push_str(&format!("{file}:{}\n", check_line(d)));
    }
    let warnings = parsed
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .count();
    if parsed.is_invalid() {
        out.push_str(&format!(
            "{file}: invalid: kodiai would use the default settings and say so in a comment\n"
        ));
    } else if warnings > 0 {
        out.push_str(&format!(
            "{file}: valid, with {warnings} warning{}\n",
            if warnings == 1 { "" } else { "s" }
        ));
    } else {
        out.push_str(&format!("{file}: valid\n"));
    }
    out
}
