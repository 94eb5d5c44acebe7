//! The diff parser and the anchors on real patches: each test makes a repository with real git,
//! commits a change and parses `git diff` (or one file's hunks, as GitHub's pull files API sends
//! them).

use std::path::Path;
use std::process::Command;

use kodiai_github::diff::anchor::{
    Placement, ProposedComment, SummaryReason, place, plan, summary_section,
};
use kodiai_github::diff::{Diff, DiffFile, FileStatus, LineKind, Side};
use pretty_assertions::assert_eq;

/// A scratch repository driven by the git binary, isolated from the machine's git config.
pub struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    pub fn new() -> Self {
        let repo = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        repo.git(&["init", "--quiet", "--initial-branch=main"]);
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
            .args(["-c", "commit.gpgsign=false", "-c", "core.autocrlf=false"])
            .args(args)
            .current_dir(self.path())
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn write(&self, path: &str, content: impl AsRef<[u8]>) {
        let full = self.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
    }

    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "--all"]);
        self.git(&["commit", "--quiet", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"]).trim().to_owned()
    }

    /// `git diff base head` with rename detection, as a pull request shows it.
    pub fn diff(&self, base: &str, head: &str, extra: &[&str]) -> String {
        let mut args = vec!["diff", "--no-color", "--no-ext-diff", "-M"];
        args.extend_from_slice(extra);
        args.extend([base, head]);
        self.git(&args)
    }
}

/// `n` numbered lines, `prefix1` … `prefixN`, each ending in a newline.
pub fn numbered_lines(prefix: &str, n: usize) -> String {
    (1..=n).map(|i| format!("{prefix}{i}\n")).collect()
}

/// The hunks of `path` in a `git diff` text: what GitHub's pull files API sends as `patch`.
fn github_patch(diff: &str, path: &str) -> String {
    let header = format!("diff --git a/{path} ");
    let start = diff.find(&header).unwrap();
    let rest = &diff[start + 1..];
    let end = rest.find("\ndiff --git ").map_or(rest.len(), |e| e + 1);
    let file = &rest[..end];
    let hunks = file.find("\n@@ ").unwrap() + 1;
    file[hunks..].trim_end_matches('\n').to_owned()
}

/// A base and head commit covering every kind of change the parser must know.
fn every_kind_of_change() -> (Repo, String) {
    let repo = Repo::new();
    repo.write("src/lib.rs", numbered_lines("line ", 40));
    repo.write("old_name.rs", numbered_lines("fn f", 12));
    repo.write("gone.txt", "one\ntwo\n");
    repo.write("logo.bin", [0u8, 159, 146, 150, 0, 1, 2, 3]);
    repo.write("eol_both.txt", "a\nb\nc");
    repo.write("eol_added.txt", "x\ny");
    let base = repo.commit("base");

    let mut lib = numbered_lines("line ", 40).replace("line 5\n", "line five\n");
    lib = lib.replace("line 30\n", "line 30\ninserted\n");
    repo.write("src/lib.rs", lib);
    std::fs::remove_file(repo.path().join("old_name.rs")).unwrap();
    repo.write(
        "new_name.rs",
        numbered_lines("fn f", 12).replace("fn f6\n", "fn six\n"),
    );
    std::fs::remove_file(repo.path().join("gone.txt")).unwrap();
    repo.write("logo.bin", [0u8, 1, 2, 3, 0, 159, 146, 150, 7]);
    repo.write("eol_both.txt", "a\nb\nC");
    repo.write("eol_added.txt", "x\ny\n");
    repo.write("added.rs", "pub fn added() {}\n");
    repo.write("dir with space/new.png", [137u8, 80, 78, 71, 0, 0, 0, 13]);
    let head = repo.commit("head");
    let text = repo.diff(&base, &head, &[]);
    (repo, text)
}

#[test]
fn a_real_git_diff_is_parsed_file_by_file() {
    let (_repo, text) = every_kind_of_change();
    let diff = Diff::parse_git(&text);
    let summary: Vec<_> = diff
        .files()
        .iter()
        .map(|f| {
            (
                f.path.as_str(),
                f.previous_path.as_deref(),
                f.status,
                f.binary,
                f.hunks.len(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("added.rs", None, FileStatus::Added, false, 1),
            ("dir with space/new.png", None, FileStatus::Added, true, 0),
            ("eol_added.txt", None, FileStatus::Modified, false, 1),
            ("eol_both.txt", None, FileStatus::Modified, false, 1),
            ("gone.txt", None, FileStatus::Removed, false, 1),
            ("logo.bin", None, FileStatus::Modified, true, 0),
            (
                "new_name.rs",
                Some("old_name.rs"),
                FileStatus::Renamed,
                false,
                1
            ),
            ("src/lib.rs", None, FileStatus::Modified, false, 2),
        ]
    );

    let removed = diff.file("gone.txt").unwrap();
    assert_eq!(
        (removed.old_path(), removed.new_path()),
        (Some("gone.txt"), None)
    );
    assert!(
        removed.hunks[0]
            .lines
            .iter()
            .all(|l| l.kind == LineKind::Removed)
    );
    assert_eq!(removed.hunk_range(Side::Left, 0), Some(1..=2));
    assert_eq!(removed.hunk_range(Side::Right, 0), None);

    let added = diff.file("added.rs").unwrap();
    assert_eq!(
        (added.old_path(), added.new_path()),
        (None, Some("added.rs"))
    );
    assert_eq!(added.hunk_range(Side::Right, 0), Some(1..=1));

    let renamed = diff.file("new_name.rs").unwrap();
    assert_eq!(renamed.old_path(), Some("old_name.rs"));
    let changed: Vec<_> = renamed.hunks[0]
        .lines
        .iter()
        .filter(|l| l.kind != LineKind::Context)
        .map(|l| (l.kind, l.old_line, l.new_line, l.text.as_str()))
        .collect();
    assert_eq!(
        changed,
        vec![
            (LineKind::Removed, Some(6), None, "fn f6"),
            (LineKind::Added, None, Some(6), "fn six"),
        ]
    );

    let lib = diff.file("src/lib.rs").unwrap();
    assert_eq!(lib.hunk_range(Side::Right, 0), Some(2..=8));
    assert_eq!(lib.hunk_range(Side::Right, 1), Some(28..=34));
    assert_eq!(lib.hunk_range(Side::Left, 1), Some(28..=33));
    let inserted = lib.hunks[1]
        .lines
        .iter()
        .find(|l| l.kind == LineKind::Added)
        .unwrap();
    assert_eq!(
        (inserted.new_line, inserted.text.as_str()),
        (Some(31), "inserted")
    );
    assert_eq!(lib.hunk_of(Side::Right, 31), Some(1));
    assert_eq!(lib.hunk_of(Side::Right, 20), None);
    let right: Vec<_> = lib.commentable_lines(Side::Right).collect();
    assert_eq!(right.len(), 7 + 7);
    assert_eq!(right[0], (2, 0));
    assert_eq!(right[13], (34, 1));
}

#[test]
fn no_newline_at_end_of_file_marks_lines_on_either_side() {
    let (_repo, text) = every_kind_of_change();
    let diff = Diff::parse_git(&text);

    let both = &diff.file("eol_both.txt").unwrap().hunks[0];
    let marks: Vec<_> = both
        .lines
        .iter()
        .map(|l| (l.kind, l.text.as_str(), l.no_newline))
        .collect();
    assert_eq!(
        marks,
        vec![
            (LineKind::Context, "a", false),
            (LineKind::Context, "b", false),
            (LineKind::Removed, "c", true),
            (LineKind::Added, "C", true),
        ]
    );

    let added_eol = &diff.file("eol_added.txt").unwrap().hunks[0];
    let marks: Vec<_> = added_eol
        .lines
        .iter()
        .map(|l| (l.kind, l.text.as_str(), l.no_newline))
        .collect();
    assert_eq!(
        marks,
        vec![
            (LineKind::Context, "x", false),
            (LineKind::Removed, "y", true),
            (LineKind::Added, "y", false),
        ]
    );
}

#[test]
fn github_patches_parse_like_the_whole_diff() {
    let (_repo, text) = every_kind_of_change();
    let whole = Diff::parse_git(&text);
    for (path, status, previous) in [
        ("src/lib.rs", FileStatus::Modified, None),
        ("new_name.rs", FileStatus::Renamed, Some("old_name.rs")),
        ("gone.txt", FileStatus::Removed, None),
        ("eol_both.txt", FileStatus::Modified, None),
        ("eol_added.txt", FileStatus::Modified, None),
    ] {
        let patch = github_patch(&text, previous.unwrap_or(path));
        let file = DiffFile::from_patch(path, status, previous, Some(&patch));
        assert_eq!(&file, whole.file(path).unwrap(), "{path}");
    }
    let binary = DiffFile::from_patch("logo.bin", FileStatus::Modified, None, None);
    assert!(binary.hunks.is_empty());
}

#[test]
fn a_git_binary_patch_is_skipped_to_the_next_file() {
    let repo = Repo::new();
    repo.write("a.bin", [0u8, 1, 2, 3, 4, 5]);
    repo.write("z.txt", "one\n");
    let base = repo.commit("base");
    let noise: Vec<u8> = (0..4000u32).map(|i| (i * 7919 % 251) as u8).collect();
    repo.write("a.bin", &noise);
    repo.write("z.txt", "one\ntwo\n");
    let head = repo.commit("head");
    let text = repo.diff(&base, &head, &["--binary"]);
    assert!(text.contains("GIT binary patch"));
    let diff = Diff::parse_git(&text);
    let files: Vec<_> = diff
        .files()
        .iter()
        .map(|f| (f.path.as_str(), f.binary, f.hunks.len()))
        .collect();
    assert_eq!(files, vec![("a.bin", true, 0), ("z.txt", false, 1)]);
    assert_eq!(
        diff.file("z.txt").unwrap().hunk_range(Side::Right, 0),
        Some(1..=2)
    );
}

#[test]
fn a_ten_thousand_line_hunk_is_one_hunk() {
    let repo = Repo::new();
    repo.write("big.txt", numbered_lines("old ", 10_000));
    let base = repo.commit("base");
    repo.write("big.txt", numbered_lines("new ", 10_000));
    let head = repo.commit("head");
    let text = repo.diff(&base, &head, &[]);
    let diff = Diff::parse_git(&text);
    let big = diff.file("big.txt").unwrap();
    assert_eq!(big.hunks.len(), 1);
    assert_eq!(big.hunks[0].lines.len(), 20_000);
    assert_eq!(big.hunk_range(Side::Right, 0), Some(1..=10_000));
    assert_eq!(big.hunk_range(Side::Left, 0), Some(1..=10_000));
    let last = big.hunks[0].lines.last().unwrap();
    assert_eq!(
        (last.kind, last.new_line, last.text.as_str()),
        (LineKind::Added, Some(10_000), "new 10000")
    );
    let numbered = big.numbered();
    assert!(
        numbered.ends_with("10000 +new 10000\n"),
        "{}",
        &numbered[numbered.len() - 40..]
    );
    assert!(numbered.contains("\n    1 +new 1\n"));
}

#[test]
fn numbered_patches_show_new_side_numbers() {
    let (_repo, text) = every_kind_of_change();
    let diff = Diff::parse_git(&text);
    assert_eq!(
        diff.file("new_name.rs").unwrap().numbered(),
        "@@ -3,7 +3,7 @@ fn f2\n3  fn f3\n4  fn f4\n5  fn f5\n  -fn f6\n6 +fn six\n7  fn f7\n8  fn f8\n9  fn f9\n"
    );
}

// ---- anchors ----

/// `src/lib.rs` of [`every_kind_of_change`]: RIGHT hunks 2..=8 and 28..=34 (31 inserted),
/// LEFT hunks 2..=8 and 28..=33.
fn lib_diff() -> Diff {
    let (_repo, text) = every_kind_of_change();
    Diff::parse_git(&text)
}

fn proposed(path: &str, start: Option<u64>, line: u64, side: Side, body: &str) -> ProposedComment {
    ProposedComment {
        path: path.to_owned(),
        line,
        start_line: start,
        side,
        body: body.to_owned(),
    }
}

/// (kind, start_line, line, side) of a placement, or the summary reason.
fn outcome(p: &Placement) -> (String, Option<u64>, u64, String) {
    match p {
        Placement::Exact(c) => ("exact".into(), c.start_line, c.line, c.side.clone()),
        Placement::Moved { comment: c, .. } => {
            ("moved".into(), c.start_line, c.line, c.side.clone())
        }
        Placement::Summary(u) => (
            format!("summary {:?}", u.reason),
            u.start_line,
            u.line,
            String::new(),
        ),
    }
}

/// [`outcome`] of placing [`proposed`]`(path, start, line, side, body)` on `diff`.
fn placed(
    diff: &Diff,
    path: &str,
    start: Option<u64>,
    line: u64,
    side: Side,
    body: &str,
) -> (String, Option<u64>, u64, String) {
    outcome(&place(diff, &proposed(path, start, line, side, body)))
}

fn o(kind: &str, start: Option<u64>, line: u64, side: &str) -> (String, Option<u64>, u64, String) {
    (kind.to_owned(), start, line, side.to_owned())
}

#[test]
fn comments_in_the_diff_stay_where_they_are() {
    let diff = lib_diff();
    let exact = place(&diff, &proposed("src/lib.rs", None, 5, Side::Right, "five"));
    let Placement::Exact(c) = &exact else {
        panic!("{exact:?}");
    };
    assert_eq!(
        (
            c.path.as_str(),
            c.line,
            c.side.as_str(),
            c.start_line,
            c.start_side.as_deref()
        ),
        ("src/lib.rs", 5, "RIGHT", None, None)
    );
    assert_eq!(c.body, "five");
    let range = place(
        &diff,
        &proposed("./src/lib.rs", Some(29), 32, Side::Right, "r"),
    );
    let Placement::Exact(c) = &range else {
        panic!("{range:?}");
    };
    assert_eq!(
        (
            c.path.as_str(),
            c.start_line,
            c.line,
            c.start_side.as_deref()
        ),
        ("src/lib.rs", Some(29), 32, Some("RIGHT"))
    );
    // A reversed range is the same lines; an equal start is a single line.
    assert_eq!(
        placed(&diff, "src/lib.rs", Some(32), 29, Side::Right, "r"),
        o("exact", Some(29), 32, "RIGHT")
    );
    assert_eq!(
        placed(&diff, "src/lib.rs", Some(7), 7, Side::Right, "r"),
        o("exact", None, 7, "RIGHT")
    );
}

#[test]
fn left_side_comments_use_old_line_numbers() {
    let diff = lib_diff();
    // Old line 5 was removed; old 33 is the last context line of the second hunk on the left.
    assert_eq!(
        placed(&diff, "src/lib.rs", None, 5, Side::Left, "why remove?"),
        o("exact", None, 5, "LEFT")
    );
    assert_eq!(
        placed(&diff, "src/lib.rs", Some(28), 33, Side::Left, "x"),
        o("exact", Some(28), 33, "LEFT")
    );
    // New line 34 exists on the right, not on the left (the left hunk ends at 33).
    assert_eq!(
        placed(&diff, "src/lib.rs", None, 34, Side::Left, "x"),
        o("moved", None, 33, "LEFT")
    );
    // A removed file only has a left side.
    assert_eq!(
        placed(&diff, "gone.txt", None, 2, Side::Left, "x"),
        o("exact", None, 2, "LEFT")
    );
    assert_eq!(
        placed(&diff, "gone.txt", None, 1, Side::Right, "x"),
        o("summary OutsideDiff", None, 1, "")
    );
}

#[test]
fn comments_near_the_diff_move_to_the_nearest_line() {
    let diff = lib_diff();
    let moved = place(
        &diff,
        &proposed("src/lib.rs", None, 11, Side::Right, "about 11"),
    );
    let Placement::Moved { from, to, comment } = &moved else {
        panic!("{moved:?}");
    };
    assert_eq!((from.line, to.line, comment.line), (11, 8, 8));
    assert!(comment.body.starts_with("about 11\n\n"), "{}", comment.body);
    assert!(comment.body.contains("About line 11"), "{}", comment.body);
    // 25 is 3 from the second hunk, 17 from the first.
    assert_eq!(
        placed(&diff, "src/lib.rs", None, 25, Side::Right, "x"),
        o("moved", None, 28, "RIGHT")
    );
    assert_eq!(
        placed(&diff, "src/lib.rs", None, 1, Side::Right, "x"),
        o("moved", None, 2, "RIGHT")
    );
}

#[test]
fn comments_far_from_the_diff_or_on_other_files_go_to_the_summary() {
    let diff = lib_diff();
    let cases = [
        (
            proposed("src/lib.rs", None, 18, Side::Right, "x"),
            "summary OutsideDiff",
        ),
        (
            proposed("src/other.rs", None, 3, Side::Right, "x"),
            "summary FileNotInDiff",
        ),
        (
            proposed("logo.bin", None, 1, Side::Right, "x"),
            "summary BinaryFile",
        ),
        (
            proposed("old_name.rs", None, 6, Side::Left, "x"),
            "summary FileNotInDiff",
        ),
    ];
    for (p, expected) in cases {
        assert_eq!(outcome(&place(&diff, &p)).0, expected, "{p:?}");
    }
    let mode_only = Diff::from_files(vec![DiffFile::from_patch(
        "script.sh",
        FileStatus::Modified,
        None,
        None,
    )]);
    assert_eq!(
        placed(&mode_only, "script.sh", None, 1, Side::Right, "x").0,
        "summary NoHunks"
    );
}

#[test]
fn a_range_across_hunks_shrinks_into_one() {
    let diff = lib_diff();
    // 6..=30: `line` 30 is in the second hunk (28..=34), so the range keeps 28..=30.
    assert_eq!(
        placed(&diff, "src/lib.rs", Some(6), 30, Side::Right, "x"),
        o("moved", Some(28), 30, "RIGHT")
    );
    // 7..=20: only `start_line` is in a hunk (2..=8): 7..=8.
    assert_eq!(
        placed(&diff, "src/lib.rs", Some(7), 20, Side::Right, "x"),
        o("moved", Some(7), 8, "RIGHT")
    );
    // 8..=15 leaves one line of the first hunk: a single-line comment on 8.
    assert_eq!(
        placed(&diff, "src/lib.rs", Some(8), 15, Side::Right, "x"),
        o("moved", None, 8, "RIGHT")
    );
    // 26..=40 holds the whole second hunk.
    assert_eq!(
        placed(&diff, "src/lib.rs", Some(26), 40, Side::Right, "x"),
        o("moved", Some(28), 34, "RIGHT")
    );
    // 14..=20 touches no hunk and 20 is too far from one.
    assert_eq!(
        placed(&diff, "src/lib.rs", Some(14), 20, Side::Right, "x").0,
        "summary OutsideDiff"
    );
}

#[test]
fn a_suggestion_is_only_posted_on_its_own_lines() {
    let diff = lib_diff();
    let suggestion = "Use a word:\n```suggestion\nline five\n```";
    assert_eq!(
        placed(&diff, "src/lib.rs", None, 5, Side::Right, suggestion),
        o("exact", None, 5, "RIGHT")
    );
    // Moved, it would replace line 8 with "line five": summary instead.
    let moved = place(
        &diff,
        &proposed("src/lib.rs", None, 10, Side::Right, suggestion),
    );
    assert_eq!(outcome(&moved).0, "summary SuggestionNotOnItsLines");
    // Shrunk, it would replace fewer lines than it was written for.
    assert_eq!(
        placed(&diff, "src/lib.rs", Some(6), 30, Side::Right, suggestion).0,
        "summary SuggestionNotOnItsLines"
    );
    assert_eq!(
        placed(&diff, "src/lib.rs", None, 5, Side::Left, suggestion).0,
        "summary SuggestionOnLeft"
    );

    // In the summary the suggestion is plain code, under its file and line.
    let Placement::Summary(unplaced) = moved else {
        unreachable!()
    };
    let section = summary_section(&[unplaced]);
    assert!(
        section.contains("**`src/lib.rs:10`**\n\nUse a word:\n```\nline five\n```"),
        "{section}"
    );
    assert!(!section.contains("suggestion"), "{section}");
}

#[test]
fn a_plan_sorts_a_reviews_comments() {
    let diff = lib_diff();
    let plan = plan(
        &diff,
        &[
            proposed("src/lib.rs", None, 5, Side::Right, "a"),
            proposed("src/lib.rs", None, 11, Side::Right, "b"),
            proposed("nope.rs", None, 1, Side::Right, "c"),
            proposed("added.rs", None, 1, Side::Right, "d"),
        ],
    );
    let inline: Vec<_> = plan
        .comments
        .iter()
        .map(|c| (c.path.as_str(), c.line))
        .collect();
    assert_eq!(
        inline,
        vec![("src/lib.rs", 5), ("src/lib.rs", 8), ("added.rs", 1)]
    );
    assert_eq!(plan.moved, 1);
    assert_eq!(plan.unplaced.len(), 1);
    assert_eq!(plan.unplaced[0].location(), "nope.rs:1");
    assert_eq!(plan.unplaced[0].reason, SummaryReason::FileNotInDiff);
}
