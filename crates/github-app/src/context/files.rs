//! What a changed file is, from its path and patch alone: its [`FileKind`] (which ranks it for
//! the prompt) or the [`SkipReason`] that keeps it out (lock files, vendored code, minified and
//! generated files, binaries). Reviewing those costs tokens and finds nothing a human would fix
//! by hand, so they are listed, not shown.

use std::fmt;

use kodiai_github::rest::PullFile;

/// A patch line longer than this is minified or generated data, not code someone wrote.
pub const MAX_LINE_CHARS: usize = 1000;
/// How far into a patch the generated-file markers are looked for.
const MARKER_LINES: usize = 30;

/// What a reviewed file is, in the order the prompt shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileKind {
    Source,
    Test,
    /// Documentation and configuration: reviewed last.
    DocsOrConfig,
}

impl FileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Test => "test",
            Self::DocsOrConfig => "docs/config",
        }
    }
}

/// Why a changed file is not in the prompt.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    /// Reviewable, but the prompt had no room left: the agent can read it with its tools.
    Budget,
    /// Not matched by `.kodiai.yml`'s `review.paths`.
    OutsidePaths,
    /// Matched by this pattern of `review.ignore_paths`.
    IgnoredPath(String),
    LockFile,
    Vendored,
    Minified,
    Generated,
    /// Deleted: nothing is left on the new side to comment on.
    Deleted,
    /// Moved without changing a line.
    RenamedOnly,
    /// GitHub sent no patch: a binary file, or a diff too large for it to show.
    NoPatch,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Budget => f.write_str("not shown for lack of room"),
            Self::OutsidePaths => f.write_str("outside review.paths"),
            Self::IgnoredPath(pattern) => write!(f, "review.ignore_paths `{pattern}`"),
            Self::LockFile => f.write_str("lock file"),
            Self::Vendored => f.write_str("vendored"),
            Self::Minified => f.write_str("minified"),
            Self::Generated => f.write_str("generated"),
            Self::Deleted => f.write_str("deleted"),
            Self::RenamedOnly => f.write_str("renamed without changes"),
            Self::NoPatch => f.write_str("binary, or no diff from GitHub"),
        }
    }
}

const LOCK_FILES: &[&str] = &[
    "Cargo.lock",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "bun.lockb",
    "bun.lock",
    "poetry.lock",
    "Pipfile.lock",
    "uv.lock",
    "pdm.lock",
    "go.sum",
    "composer.lock",
    "Gemfile.lock",
    "Podfile.lock",
    "Package.resolved",
    "pubspec.lock",
    "mix.lock",
    "flake.lock",
    "packages.lock.json",
    "gradle.lockfile",
    "conan.lock",
];

const VENDOR_DIRS: &[&str] = &[
    "vendor",
    "vendored",
    "third_party",
    "third-party",
    "thirdparty",
    "node_modules",
    "bower_components",
];

const GENERATED_SUFFIXES: &[&str] = &[
    ".pb.go",
    ".pb.cc",
    ".pb.h",
    "_pb2.py",
    "_pb2_grpc.py",
    ".pb.swift",
    ".g.dart",
    ".freezed.dart",
    ".designer.cs",
    ".generated.ts",
    ".generated.js",
];

const DOC_EXTENSIONS: &[&str] = &["md", "markdown", "rst", "adoc", "txt", "org"];
const CONFIG_EXTENSIONS: &[&str] = &[
    "json",
    "yml",
    "yaml",
    "toml",
    "ini",
    "cfg",
    "conf",
    "xml",
    "properties",
    "env",
    "editorconfig",
];
const CONFIG_NAMES: &[&str] = &[
    "Dockerfile",
    "Makefile",
    "CODEOWNERS",
    "LICENSE",
    "CHANGELOG",
    ".gitignore",
    ".gitattributes",
    ".dockerignore",
];
const TEST_DIRS: &[&str] = &["test", "tests", "__tests__", "spec", "specs", "testdata"];
const DOC_DIRS: &[&str] = &["doc", "docs", "documentation"];

/// The lines of a patch and the longest of them, from one pass over it (the prompt builder
/// needs both for every file of a pull request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PatchShape {
    pub lines: usize,
    pub longest_line: usize,
}

impl PatchShape {
    pub fn of(patch: &str) -> Self {
        let mut shape = Self::default();
        for line in patch.split('\n') {
            shape.lines += 1;
            shape.longest_line = shape.longest_line.max(line.len());
        }
        shape
    }
}

/// Why `file` is skipped outright, whatever the budget, if it is; `shape` is its patch's.
/// `.kodiai.yml`'s scope is checked before this, by the caller.
pub fn skip_reason(file: &PullFile, shape: &PatchShape) -> Option<SkipReason> {
    let path = file.filename.as_str();
    let name = path.rsplit('/').next().unwrap_or(path);
    let dirs = || path.split('/').rev().skip(1);
    if LOCK_FILES.contains(&name) {
        return Some(SkipReason::LockFile);
    }
    if dirs().any(|d| VENDOR_DIRS.contains(&d)) {
        return Some(SkipReason::Vendored);
    }
    let lower = name.to_ascii_lowercase();
    if lower.contains(".min.") || lower.ends_with(".map") {
        return Some(SkipReason::Minified);
    }
    if GENERATED_SUFFIXES.iter().any(|s| lower.ends_with(s))
        || lower.contains("_generated.")
        || lower.contains(".generated.")
        || dirs().any(|d| d == "generated" || d == "__generated__")
    {
        return Some(SkipReason::Generated);
    }
    if file.status == "removed" {
        return Some(SkipReason::Deleted);
    }
    let Some(patch) = file.patch.as_deref().filter(|p| !p.is_empty()) else {
        if file.status == "renamed" && file.additions + file.deletions == 0 {
            return Some(SkipReason::RenamedOnly);
        }
        return Some(SkipReason::NoPatch);
    };
    let head = || patch.lines().take(MARKER_LINES);
    if head().any(|l| l.contains("@generated"))
        || head().any(|l| l.contains("Code generated") && l.contains("DO NOT EDIT"))
    {
        return Some(SkipReason::Generated);
    }
    if shape.longest_line > MAX_LINE_CHARS {
        return Some(SkipReason::Minified);
    }
    None
}

/// What kind of file `path` is.
pub fn kind(path: &str) -> FileKind {
    let name = path.rsplit('/').next().unwrap_or(path);
    let dirs: Vec<&str> = path.split('/').rev().skip(1).collect();
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, ext.to_ascii_lowercase()),
        _ => (name, String::new()),
    };
    let is_test_name = stem.starts_with("test_")
        || stem.ends_with("_test")
        || stem.ends_with("_tests")
        || stem.ends_with(".test")
        || stem.ends_with(".spec")
        || stem.ends_with("_spec")
        || (stem.ends_with("Test") && stem.len() > 4)
        || (stem.ends_with("Tests") && stem.len() > 5);
    if is_test_name || dirs.iter().any(|d| TEST_DIRS.contains(d)) {
        return FileKind::Test;
    }
    let upper = stem.to_ascii_uppercase();
    if DOC_EXTENSIONS.contains(&ext.as_str())
        || CONFIG_EXTENSIONS.contains(&ext.as_str())
        || CONFIG_NAMES.iter().any(|n| n.eq_ignore_ascii_case(name))
        || ["LICENSE", "CHANGELOG", "README", "COPYING"].contains(&upper.as_str())
        || dirs.iter().any(|d| DOC_DIRS.contains(d))
        || path.starts_with(".github/")
    {
        return FileKind::DocsOrConfig;
    }
    FileKind::Source
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, status: &str, patch: Option<&str>) -> PullFile {
        PullFile {
            filename: path.into(),
            status: status.into(),
            additions: 1,
            deletions: 0,
            patch: patch.map(str::to_owned),
            previous_filename: None,
        }
    }

    #[test]
    fn kinds_rank_source_then_tests_then_docs_and_config() {
        for (path, expected) in [
            ("src/lib.rs", FileKind::Source),
            ("crates/a/src/main.rs", FileKind::Source),
            ("web/app.tsx", FileKind::Source),
            ("tests/all.rs", FileKind::Test),
            ("pkg/server_test.go", FileKind::Test),
            ("app/test_models.py", FileKind::Test),
            ("ui/button.test.tsx", FileKind::Test),
            ("src/main/java/FooTest.java", FileKind::Test),
            ("README.md", FileKind::DocsOrConfig),
            ("docs/guide/intro.html", FileKind::DocsOrConfig),
            ("Cargo.toml", FileKind::DocsOrConfig),
            (".github/workflows/ci.yml", FileKind::DocsOrConfig),
            ("Dockerfile", FileKind::DocsOrConfig),
            ("LICENSE", FileKind::DocsOrConfig),
        ] {
            assert_eq!(kind(path), expected, "{path}");
        }
        assert!(FileKind::Source < FileKind::Test && FileKind::Test < FileKind::DocsOrConfig);
    }

    #[test]
    fn lock_vendored_minified_generated_and_binary_files_are_skipped() {
        let p = Some("@@ -1 +1 @@\n-a\n+b");
        for (f, expected) in [
            (
                file("Cargo.lock", "modified", p),
                Some(SkipReason::LockFile),
            ),
            (
                file("web/package-lock.json", "modified", p),
                Some(SkipReason::LockFile),
            ),
            (file("go.sum", "modified", p), Some(SkipReason::LockFile)),
            (
                file("vendor/github.com/x/y.go", "added", p),
                Some(SkipReason::Vendored),
            ),
            (
                file("web/node_modules/a/index.js", "added", p),
                Some(SkipReason::Vendored),
            ),
            (
                file("static/app.min.js", "modified", p),
                Some(SkipReason::Minified),
            ),
            (
                file("api/v1/service.pb.go", "modified", p),
                Some(SkipReason::Generated),
            ),
            (
                file("src/schema_generated.rs", "modified", p),
                Some(SkipReason::Generated),
            ),
            (
                file(
                    "src/bindings.rs",
                    "added",
                    Some("@@ -0,0 +1,2 @@\n+// @generated by bindgen\n+pub fn f() {}"),
                ),
                Some(SkipReason::Generated),
            ),
            (
                file(
                    "app/data.js",
                    "added",
                    Some(&format!("@@ -0,0 +1 @@\n+{}", "x".repeat(2000))),
                ),
                Some(SkipReason::Minified),
            ),
            (file("logo.png", "added", None), Some(SkipReason::NoPatch)),
            (file("src/old.rs", "removed", p), Some(SkipReason::Deleted)),
            (file("src/lib.rs", "modified", p), None),
        ] {
            let shape = PatchShape::of(f.patch.as_deref().unwrap_or_default());
            assert_eq!(skip_reason(&f, &shape), expected, "{}", f.filename);
        }
        let mut moved = file("src/new_name.rs", "renamed", None);
        moved.additions = 0;
        assert_eq!(
            skip_reason(&moved, &PatchShape::default()),
            Some(SkipReason::RenamedOnly)
        );
    }
}
