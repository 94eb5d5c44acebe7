//! Where Markdown puts code: the one scanner that tells code from prose, for every rule that
//! treats the two differently. The mention matcher does not look in code, and the outgoing
//! gate leaves kodiai's own handles in code alone; with one scanner, what the gate leaves
//! alone in a body kodiai writes is exactly what the matcher skips when that body comes back.
//!
//! It follows CommonMark for what it knows, and is not a full parser:
//!
//! - A fenced code block opens on a line of at most three spaces of indent and a run of three
//!   or more backticks or tildes. A backtick fence's info string may not hold a backtick (such a
//!   line opens nothing: its backticks are code spans or literal text); a tilde fence's may. It
//!   closes on a line of at most three spaces of indent, a run of the same character at least as
//!   long as the opening one, and nothing but whitespace after; unclosed, it runs to the end of
//!   the text. The whole block, fences included, is code.
//! - The other non-blank lines make paragraphs. A paragraph ends at a blank line, a fence's
//!   opening, or where quoted lines (`>` after at most three spaces) and unquoted ones meet
//!   (there is no lazy continuation of a quote).
//! - In a paragraph, a code span runs from a run of backticks to the next run of exactly the
//!   same length, across the paragraph's lines; a run that nothing closes is literal text.
//! - Not handled: indented code blocks, backslash escapes, HTML blocks, tabs as indentation,
//!   the indentation of list items.

use std::ops::Range;

/// What [`scan`] found, as byte ranges of the text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Fenced code blocks and code spans, in order and disjoint.
    pub code: Vec<Range<usize>>,
    /// The lines of block quotes outside fenced code blocks (each with its line end), in
    /// order and disjoint. A quote's code spans are in [`Scan::code`] too.
    pub quotes: Vec<Range<usize>>,
}

/// An open fenced code block.
struct Fence {
    mark: u8,
    len: usize,
    start: usize,
}

impl Fence {
    /// The fence `line` (without its indent) opens at byte `start`, if it opens one.
    fn opening(line: &str, start: usize) -> Option<Self> {
        let mark = *line.as_bytes().first()?;
        let len = run_of(line.as_bytes(), mark);
        let opens = match mark {
            b'`' => len >= 3 && !line[len..].contains('`'),
            b'~' => len >= 3,
            _ => false,
        };
        opens.then_some(Self { mark, len, start })
    }

    /// Whether `line` (without its indent) closes this fence.
    fn closed_by(&self, line: &str) -> bool {
        let run = run_of(line.as_bytes(), self.mark);
        run >= self.len && line[run..].trim().is_empty()
    }
}

/// How many bytes `bytes` starts with that are `mark`.
fn run_of(bytes: &[u8], mark: u8) -> usize {
    bytes.iter().take_while(|b| **b == mark).count()
}

/// The code and the quoted lines of `text`.
pub fn scan(text: &str) -> Scan {
    let mut scan = Scan::default();
    let mut fence: Option<Fence> = None;
    // The current paragraph: where it starts, and whether its lines are quoted.
    let mut paragraph: Option<(usize, bool)> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let indent = line.len() - line.trim_start_matches(' ').len();
        let body = &line[indent..];
        if let Some(open) = &fence {
            if indent <= 3 && open.closed_by(body) {
                scan.code.push(open.start..offset);
                fence = None;
            }
            continue;
        }
        let opening = if indent <= 3 {
            Fence::opening(body, start)
        } else {
            None
        };
        let blank = body.trim().is_empty();
        let quoted = !blank && indent <= 3 && body.starts_with('>');
        if let Some((from, was_quoted)) = paragraph
            && (opening.is_some() || blank || quoted != was_quoted)
        {
            code_spans(text, from..start, &mut scan.code);
            paragraph = None;
        }
        if opening.is_some() {
            fence = opening;
            continue;
        }
        if quoted {
            scan.quotes.push(start..offset);
        }
        if !blank && paragraph.is_none() {
            paragraph = Some((start, quoted));
        }
    }
    if let Some(open) = fence {
        scan.code.push(open.start..text.len());
    }
    if let Some((from, _)) = paragraph {
        code_spans(text, from..text.len(), &mut scan.code);
    }
    scan
}

/// Adds the code spans of the paragraph `text[paragraph]` to `code`.
fn code_spans(text: &str, paragraph: Range<usize>, code: &mut Vec<Range<usize>>) {
    let bytes = &text.as_bytes()[..paragraph.end];
    let mut i = paragraph.start;
    while i < bytes.len() {
        if bytes[i] != b'`' {
            i += 1;
            continue;
        }
        let open = run_of(&bytes[i..], b'`');
        let mut j = i + open;
        let mut closed = None;
        while j < bytes.len() {
            if bytes[j] == b'`' {
                let run = run_of(&bytes[j..], b'`');
                if run == open {
                    closed = Some(j + run);
                    break;
                }
                j += run;
            } else {
                j += 1;
            }
        }
        match closed {
            Some(end) => {
                code.push(i..end);
                i = end;
            }
            // A run that nothing closes is literal text.
            None => i += open,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    /// The pieces of `text` that are code.
    fn code(text: &str) -> Vec<&str> {
        scan(text).code.into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn fenced_blocks_with_backticks_or_tildes_are_code_fences_included() {
        assert_eq!(
            code("a\n```rust\nlet x;\n```\nb"),
            ["```rust\nlet x;\n```\n"]
        );
        assert_eq!(code("~~~\nx\n~~~"), ["~~~\nx\n~~~"]);
        assert_eq!(code("   ```\nx\n   ```\nb"), ["   ```\nx\n   ```\n"]);
        // Four spaces is no fence (and indented code is not looked for).
        assert_eq!(code("    ```\nx\n"), Vec::<&str>::new());
    }

    #[test]
    fn a_backtick_in_a_backtick_fences_info_string_makes_it_no_fence() {
        // The line is a paragraph: three backticks, unclosed, then a one-backtick span.
        assert_eq!(code("```x`y`\n@kodiai\n"), ["`y`"]);
        // ... and the plain fence below it opens a block that nothing closes.
        assert_eq!(code("```a`b\n@kodiai\n```"), ["```"]);
        assert_eq!(code("```@kodiai``` explain"), ["```@kodiai```"]);
    }

    #[test]
    fn a_tilde_fences_info_string_may_hold_backticks() {
        assert_eq!(
            code("~~~ `x`\n@kodiai\n~~~\nb"),
            ["~~~ `x`\n@kodiai\n~~~\n"]
        );
    }

    #[test]
    fn a_fence_closes_only_with_the_same_character_at_least_as_long() {
        assert_eq!(
            code("````\na\n```\nb\n~~~~\nc"),
            ["````\na\n```\nb\n~~~~\nc"]
        );
        assert_eq!(code("````\na\n`````\nb"), ["````\na\n`````\n"]);
        assert_eq!(code("~~~\na\n~~~ x\nb"), ["~~~\na\n~~~ x\nb"]);
        assert_eq!(code("```\na\n    ```\nb"), ["```\na\n    ```\nb"]);
    }

    #[test]
    fn an_unclosed_fence_runs_to_the_end() {
        assert_eq!(code("a\n```\nb\n\nc"), ["```\nb\n\nc"]);
        assert_eq!(code("a\n~~~"), ["~~~"]);
    }

    #[test]
    fn code_spans_match_runs_of_equal_length() {
        assert_eq!(code("a `b` c ``d ` e`` f"), ["`b`", "``d ` e``"]);
        // Unequal runs: the two-backtick run is closed by nothing, so it is literal text.
        assert_eq!(code("``a` b"), Vec::<&str>::new());
        assert_eq!(code("``a` b``"), ["``a` b``"]);
        assert_eq!(code("`a`` b` c"), ["`a`` b`"]);
        assert_eq!(code("`unclosed"), Vec::<&str>::new());
    }

    #[test]
    fn a_code_span_spans_the_lines_of_one_paragraph_only() {
        assert_eq!(code("a `b\nc` d"), ["`b\nc`"]);
        assert_eq!(code("a `b\n\nc` d"), Vec::<&str>::new());
        assert_eq!(code("a `b\n> c` d"), Vec::<&str>::new());
        assert_eq!(code("a `b\n```\nc` d"), ["```\nc` d"]);
    }

    #[test]
    fn quoted_lines_outside_fences_are_quotes() {
        let text = "> a `b`\n> c\nd\n```\n> e\n```\n   > f";
        let found = scan(text);
        let quotes: Vec<&str> = found.quotes.iter().map(|r| &text[r.clone()]).collect();
        assert_eq!(quotes, ["> a `b`\n", "> c\n", "   > f"]);
        assert_eq!(code(text), ["`b`", "```\n> e\n```\n"]);
    }

    #[test]
    fn the_ranges_are_in_order_and_disjoint_on_any_text() {
        let mut rng = fastrand::Rng::with_seed(16);
        let pieces = [
            "`", "``", "```", "~~~", "\n", "\n\n", "> ", "    ", "a", "@kodiai", "é",
        ];
        for _ in 0..2000 {
            let text: String = (0..rng.usize(0..30))
                .map(|_| pieces[rng.usize(..pieces.len())])
                .collect();
            let found = scan(&text);
            for ranges in [&found.code, &found.quotes] {
                for r in ranges {
                    assert!(r.start < r.end && r.end <= text.len(), "{text:?}: {r:?}");
                    assert!(text.is_char_boundary(r.start) && text.is_char_boundary(r.end));
                }
                for pair in ranges.windows(2) {
                    assert!(pair[0].end <= pair[1].start, "{text:?}: {ranges:?}");
                }
            }
        }
    }
}
