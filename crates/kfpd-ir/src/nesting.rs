//! A cheap look at how deeply a YAML text nests its flow collections, taken before
//! the YAML parser sees it.
//!
//! Why: the YAML parser's work grows with the square of the flow nesting depth
//! (`[[[[…` or `{"a":{"a":…`), so an upload of a few hundred kilobytes of brackets
//! holds a request for seconds and a 16 MiB one for hours. The deserializer refuses
//! such a document anyway (it stops at 128 levels), only after the parser's pass.

/// Deepest flow nesting a pipeline file may have; the same bound the deserializer
/// applies to every document.
pub(crate) const MAX_DEPTH: usize = 128;

/// The line (1-based) where the text's flow collections first nest deeper than
/// `limit`, if they do.
///
/// Counts `[` and `{` against `]` and `}` outside quoted scalars and comments. A
/// bracket inside a plain scalar (`echo a[0]`) counts too; real pipeline files stay
/// far below the limit with it, and the parser decides everything else.
pub(crate) fn too_deep(text: &[u8], limit: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut line = 1usize;
    let mut previous = b'\n';
    let mut index = 0;
    while index < text.len() {
        let byte = text[index];
        match byte {
            b'\n' => line += 1,
            b'#' if previous.is_ascii_whitespace() => {
                index = skip_until(text, index, |b| b == b'\n');
                continue;
            }
            b'"' | b'\'' if starts_token(previous) => {
                let (end, lines) = skip_quoted(text, index);
                line += lines;
                index = end;
                previous = byte;
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Some(line);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        previous = byte;
        index += 1;
    }
    None
}

/// Whether a quote after `previous` opens a quoted scalar rather than sitting
/// inside a plain one (`don't`).
fn starts_token(previous: u8) -> bool {
    previous.is_ascii_whitespace() || matches!(previous, b':' | b'-' | b'[' | b'{' | b',' | b'?')
}

fn skip_until(text: &[u8], from: usize, stop: impl Fn(u8) -> bool) -> usize {
    text[from..]
        .iter()
        .position(|&b| stop(b))
        .map_or(text.len(), |offset| from + offset)
}

/// The index after the quoted scalar opening at `start`, and the line breaks in it.
/// `\` escapes in double quotes; `''` in single quotes reads as a close and a
/// reopen, which ends in the same place.
fn skip_quoted(text: &[u8], start: usize) -> (usize, usize) {
    let quote = text[start];
    let mut lines = 0;
    let mut index = start + 1;
    while index < text.len() {
        match text[index] {
            b'\\' if quote == b'"' => index += 1,
            b'\n' => lines += 1,
            byte if byte == quote => return (index + 1, lines),
            _ => {}
        }
        index += 1;
    }
    (text.len(), lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_flow_nesting_and_names_the_line() {
        let deep = format!("a: 1\nb: {}1{}", "[".repeat(10), "]".repeat(10));
        assert_eq!(too_deep(deep.as_bytes(), 9), Some(2));
        assert_eq!(too_deep(deep.as_bytes(), 10), None);
        let json = format!("{}1{}", "{\"a\":".repeat(200), "}".repeat(200));
        assert_eq!(too_deep(json.as_bytes(), MAX_DEPTH), Some(1));
    }

    #[test]
    fn brackets_in_quotes_and_comments_do_not_count() {
        let text = format!(
            "a: \"{open}\"\nb: '{open}'\n# {open}\nc: \"esc \\\" {open}\"\nd: don't {close}\n",
            open = "[".repeat(50),
            close = "]".repeat(50)
        );
        assert_eq!(too_deep(text.as_bytes(), 1), None);
    }

    #[test]
    fn balanced_brackets_in_plain_text_never_add_up() {
        let line = "command: echo a[0] {x} [[y]]\n".repeat(10_000);
        assert_eq!(too_deep(line.as_bytes(), 3), None);
    }
}
