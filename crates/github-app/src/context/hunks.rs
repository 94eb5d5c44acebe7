//! Patches with the new side's line numbers written in, the numbers an inline comment on the
//! right side uses, so the model copies them instead of counting lines.
//!
//! Only the hunk headers (`@@ -a,b +c,d @@`) are read here; `kodiai_github::diff` is the
//! full unified-diff parser (and the one that checks anchors), which this is to be switched to.

use std::fmt::Write as _;

/// `patch` with every context and added line prefixed by its new-side line number; removed
/// lines get a blank column and `\ No newline` markers no number. A patch without a hunk header
/// is returned as it is.
pub fn number_new_lines(patch: &str) -> String {
    let mut out = String::with_capacity(patch.len() + patch.len() / 4);
    let mut next: Option<u64> = None;
    for line in patch.lines() {
        if line.starts_with("@@") {
            next = new_start(line);
            let _ = writeln!(out, "{line}");
            continue;
        }
        match (next, line.as_bytes().first()) {
            (Some(n), Some(b' ' | b'+')) | (Some(n), None) => {
                let _ = writeln!(out, "{n:>5} {line}");
                next = Some(n + 1);
            }
            (Some(_), _) => {
                let _ = writeln!(out, "      {line}");
            }
            (None, _) => {
                let _ = writeln!(out, "{line}");
            }
        }
    }
    out
}

/// `c` of `@@ -a,b +c,d @@`.
fn new_start(header: &str) -> Option<u64> {
    let plus = header.split_whitespace().find(|t| t.starts_with('+'))?;
    plus[1..].split(',').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_side_numbers_follow_the_hunk_headers() {
        let patch = "@@ -1,3 +1,4 @@ fn main() {\n a\n-b\n+c\n+d\n e\n@@ -20,2 +21,2 @@\n x\n-y\n+z\n\\ No newline at end of file";
        let numbered = number_new_lines(patch);
        assert_eq!(
            numbered,
            "@@ -1,3 +1,4 @@ fn main() {\n    1  a\n      -b\n    2 +c\n    3 +d\n    4  e\n\
             @@ -20,2 +21,2 @@\n   21  x\n      -y\n   22 +z\n      \\ No newline at end of file\n"
        );
    }

    #[test]
    fn a_new_file_starts_at_one_and_a_headerless_patch_is_left_alone() {
        assert_eq!(
            number_new_lines("@@ -0,0 +1,2 @@\n+a\n+b"),
            "@@ -0,0 +1,2 @@\n    1 +a\n    2 +b\n"
        );
        assert_eq!(
            number_new_lines("Binary files differ"),
            "Binary files differ\n"
        );
        assert_eq!(new_start("@@ -5 +7 @@"), Some(7));
    }
}
