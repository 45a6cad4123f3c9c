//! The `.properties` file format, read the way `java.util.Properties.load(InputStream)` reads
//! it, but keeping the line number of every entry and reporting every syntax error instead of
//! stopping at the first.
//!
//! Rules (all from `java.util.Properties`):
//! - bytes are ISO-8859-1: byte `0xNN` is the character `U+00NN` (non-ASCII text needs
//!   `\uXXXX` escapes; UTF-8 bytes turn into mojibake exactly as in Java);
//! - a natural line ends at `\n`, `\r` or `\r\n`; blank lines are skipped;
//! - leading whitespace (space, tab, form feed) is skipped; a line whose first other
//!   character is `#` or `!` is a comment (a comment is never continued);
//! - an odd number of backslashes at the end of a line continues the logical line on the next
//!   natural line, whose leading whitespace is dropped;
//! - the key ends at the first unescaped `=`, `:`, space, tab or form feed; whitespace, at most
//!   one `=`/`:`, and more whitespace follow before the value; trailing whitespace of the value
//!   is kept;
//! - escapes: `\t`, `\n`, `\r`, `\f`, `\uXXXX` (UTF-16 code units, so surrogate pairs combine);
//!   a backslash before any other character yields that character (`\=`, `\:`, `\ `, `\\`, `\#`).
//!
//! Why not the `java-properties` crate: it decodes as windows-1252 rather than ISO-8859-1
//! (bytes `0x80..=0x9F` differ), rejects `\uXXXX` surrogate pairs, trims Unicode whitespace
//! (for example U+00A0) at the start of continuation lines where Java trims only space, tab and
//! form feed, and stops at the first malformed escape. The format is small enough that owning
//! the parser is simpler than working around those differences.

use std::fmt;

/// One `key = value` entry with the (1-based) physical line its logical line starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The unescaped key.
    pub key: String,
    /// The unescaped value, exactly as `java.util.Properties` yields it (trailing whitespace
    /// kept; trimming is the configuration layer's business).
    pub value: String,
    /// 1-based number of the first physical line of the entry.
    pub line: usize,
}

/// A syntax error in a properties file (Java: `IllegalArgumentException: Malformed \uxxxx
/// encoding.`, which aborts the whole load).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct SyntaxError {
    /// 1-based line of the entry that holds the bad escape.
    pub line: usize,
    /// What is wrong.
    pub problem: SyntaxProblem,
}

/// What is wrong in a [`SyntaxError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyntaxProblem {
    /// `\u` not followed by four hex digits.
    MalformedUnicodeEscape {
        /// The text that followed `\u` (up to four characters).
        found: String,
    },
    /// A `\uD800`–`\uDFFF` escape that is not part of a surrogate pair.
    UnpairedSurrogate {
        /// The code unit.
        unit: u16,
    },
}

impl fmt::Display for SyntaxProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MalformedUnicodeEscape { found } => {
                write!(f, "malformed \\uXXXX escape `\\u{found}`: expected exactly four hex digits")
            }
            Self::UnpairedSurrogate { unit } => {
                write!(f, "escape `\\u{unit:04X}` is half of a UTF-16 surrogate pair without its other half")
            }
        }
    }
}

/// Parses the bytes of a properties file into its entries, in file order, duplicates included
/// (the caller decides what a duplicate means; in Java the last one wins).
///
/// Entries that contain a syntax error are left out and reported; every other entry is kept.
pub fn parse(bytes: &[u8]) -> (Vec<Entry>, Vec<SyntaxError>) {
    let text: Vec<char> = bytes.iter().map(|&b| char::from(b)).collect();
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for (line, logical) in LogicalLines::new(&text) {
        let (raw_key, raw_value) = split_key_value(&logical);
        match (unescape(raw_key), unescape(raw_value)) {
            (Ok(key), Ok(value)) => entries.push(Entry { key, value, line }),
            (key, value) => {
                for problem in [key.err(), value.err()].into_iter().flatten() {
                    errors.push(SyntaxError { line, problem });
                }
            }
        }
    }
    (entries, errors)
}

fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{c}')
}

/// Iterates over logical lines (continuations joined, comments and blank lines dropped),
/// yielding each with the number of the physical line it starts on.
struct LogicalLines<'a> {
    text: &'a [char],
    pos: usize,
    /// Number of line terminators consumed so far (the current physical line is this + 1).
    newlines: usize,
}

impl<'a> LogicalLines<'a> {
    fn new(text: &'a [char]) -> Self {
        Self { text, pos: 0, newlines: 0 }
    }

    fn peek(&self) -> Option<char> {
        self.text.get(self.pos).copied()
    }

    /// Consumes a line terminator at the current position, if there is one.
    fn eat_newline(&mut self) -> bool {
        match self.peek() {
            Some('\r') => {
                self.pos += 1;
                if self.peek() == Some('\n') {
                    self.pos += 1;
                }
                self.newlines += 1;
                true
            }
            Some('\n') => {
                self.pos += 1;
                self.newlines += 1;
                true
            }
            _ => false,
        }
    }

    /// Reads up to (and consumes) the end of the current natural line.
    fn rest_of_line(&mut self) -> &'a [char] {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == '\r' || c == '\n' {
                break;
            }
            self.pos += 1;
        }
        let line = &self.text[start..self.pos];
        self.eat_newline();
        line
    }
}

impl Iterator for LogicalLines<'_> {
    type Item = (usize, Vec<char>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            // Skip leading whitespace and blank lines.
            while let Some(c) = self.peek() {
                if is_blank(c) {
                    self.pos += 1;
                } else if !self.eat_newline() {
                    break;
                }
            }
            self.peek()?;
            let line_no = self.newlines + 1;
            let first = self.rest_of_line();
            if matches!(first.first(), Some('#' | '!')) {
                continue;
            }
            let mut logical: Vec<char> = Vec::with_capacity(first.len());
            let mut current = first;
            loop {
                let trailing = current.iter().rev().take_while(|&&c| c == '\\').count();
                if trailing % 2 == 0 {
                    logical.extend_from_slice(current);
                    break;
                }
                logical.extend_from_slice(&current[..current.len() - 1]);
                // A continuation at the very end of the input ends the line.
                if self.pos >= self.text.len() {
                    break;
                }
                while self.peek().is_some_and(is_blank) {
                    self.pos += 1;
                }
                current = self.rest_of_line();
            }
            return Some((line_no, logical));
        }
    }
}

/// Splits a logical line (leading whitespace already gone) into raw key and raw value.
fn split_key_value(line: &[char]) -> (&[char], &[char]) {
    let mut key_end = line.len();
    let mut value_start = line.len();
    let mut has_separator = false;
    let mut escaped = false;
    for (i, &c) in line.iter().enumerate() {
        if !escaped && (c == '=' || c == ':') {
            key_end = i;
            value_start = i + 1;
            has_separator = true;
            break;
        }
        if !escaped && is_blank(c) {
            key_end = i;
            value_start = i + 1;
            break;
        }
        escaped = c == '\\' && !escaped;
    }
    while let Some(&c) = line.get(value_start) {
        if is_blank(c) {
            value_start += 1;
        } else if !has_separator && (c == '=' || c == ':') {
            has_separator = true;
            value_start += 1;
        } else {
            break;
        }
    }
    (&line[..key_end], &line[value_start.min(line.len())..])
}

/// Resolves backslash escapes (Java's `loadConvert`).
fn unescape(raw: &[char]) -> Result<String, SyntaxProblem> {
    let mut units: Vec<u16> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        i += 1;
        if c != '\\' {
            push_char(&mut units, c);
            continue;
        }
        let Some(&next) = raw.get(i) else {
            // A lone trailing backslash (only possible at end of input) is dropped by the
            // line reader in Java; nothing to add.
            break;
        };
        i += 1;
        match next {
            'u' => {
                let digits: String = raw[i..raw.len().min(i + 4)].iter().collect();
                let unit = (digits.len() == 4)
                    .then(|| u16::from_str_radix(&digits, 16).ok())
                    .flatten()
                    .filter(|_| digits.chars().all(|d| d.is_ascii_hexdigit()))
                    .ok_or_else(|| SyntaxProblem::MalformedUnicodeEscape { found: digits.clone() })?;
                units.push(unit);
                i += 4;
            }
            't' => units.push(u16::from(b'\t')),
            'n' => units.push(u16::from(b'\n')),
            'r' => units.push(u16::from(b'\r')),
            'f' => units.push(0x0c),
            other => push_char(&mut units, other),
        }
    }
    char::decode_utf16(units.iter().copied())
        .map(|r| r.map_err(|e| SyntaxProblem::UnpairedSurrogate { unit: e.unpaired_surrogate() }))
        .collect()
}

fn push_char(units: &mut Vec<u16>, c: char) {
    let mut buf = [0u16; 2];
    units.extend_from_slice(c.encode_utf16(&mut buf));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(text: &[u8]) -> Vec<(String, String, usize)> {
        let (entries, errors) = parse(text);
        assert!(errors.is_empty(), "unexpected errors: {errors:?}");
        entries.into_iter().map(|e| (e.key, e.value, e.line)).collect()
    }

    fn kv(k: &str, v: &str, line: usize) -> (String, String, usize) {
        (k.to_owned(), v.to_owned(), line)
    }

    #[test]
    fn separators_equals_colon_and_whitespace() {
        let got = entries(b"a=1\nb:2\nc 3\nd\t4\ne = 5\nf : 6\ng   =   7\nh\x0c8\n");
        assert_eq!(
            got,
            vec![
                kv("a", "1", 1),
                kv("b", "2", 2),
                kv("c", "3", 3),
                kv("d", "4", 4),
                kv("e", "5", 5),
                kv("f", "6", 6),
                kv("g", "7", 7),
                kv("h", "8", 8),
            ]
        );
    }

    #[test]
    fn only_the_first_separator_is_consumed() {
        assert_eq!(
            entries(b"a==b\nc = :d\ne : = f\ng h = i\n"),
            vec![kv("a", "=b", 1), kv("c", ":d", 2), kv("e", "= f", 3), kv("g", "h = i", 4)]
        );
    }

    #[test]
    fn key_alone_or_with_empty_value() {
        assert_eq!(
            entries(b"alone\nempty=\nspaced =   \n"),
            vec![kv("alone", "", 1), kv("empty", "", 2), kv("spaced", "", 3)]
        );
    }

    #[test]
    fn trailing_whitespace_of_value_is_kept_leading_is_dropped() {
        assert_eq!(entries(b"   k =  v  \t\n"), vec![kv("k", "v  \t", 1)]);
    }

    #[test]
    fn comments_and_blank_lines() {
        let got = entries(b"# c1\n! c2\n   # indented comment\n\n   \t\na=1\n#b=2\n  !c=3\nd=#not a comment\n");
        assert_eq!(got, vec![kv("a", "1", 6), kv("d", "#not a comment", 9)]);
    }

    #[test]
    fn a_comment_is_never_continued() {
        assert_eq!(entries(b"# comment \\\na=1\n"), vec![kv("a", "1", 2)]);
    }

    #[test]
    fn continuation_lines_join_and_keep_the_first_line_number() {
        let got = entries(b"x=0\nkey = abc\\\n     def\\\n\tghi\nnext=1\n");
        assert_eq!(got, vec![kv("x", "0", 1), kv("key", "abcdefghi", 2), kv("next", "1", 5)]);
    }

    #[test]
    fn continuation_line_starting_with_hash_is_content() {
        assert_eq!(entries(b"a = x\\\n  #y\n"), vec![kv("a", "x#y", 1)]);
    }

    #[test]
    fn even_number_of_trailing_backslashes_is_not_a_continuation() {
        assert_eq!(entries(b"a = x\\\\\nb = y\n"), vec![kv("a", "x\\", 1), kv("b", "y", 2)]);
    }

    #[test]
    fn empty_continuation_line_ends_the_entry() {
        assert_eq!(entries(b"a = x\\\n\nb = y\n"), vec![kv("a", "x", 1), kv("b", "y", 3)]);
    }

    #[test]
    fn continuation_at_end_of_input() {
        assert_eq!(entries(b"a = x\\"), vec![kv("a", "x", 1)]);
    }

    #[test]
    fn crlf_and_cr_line_endings_count_lines() {
        assert_eq!(
            entries(b"a=1\r\nb=2\rc=3\r\n\r\nd=\\\r\n  4\n"),
            vec![kv("a", "1", 1), kv("b", "2", 2), kv("c", "3", 3), kv("d", "4", 5)]
        );
    }

    #[test]
    fn escapes_in_keys_and_values() {
        let got = entries(b"my\\ key\\=x\\:y = a\\tb\\nc\\\\d\\=e\nu = \\u00e9\\u0041\\u20AC\nother = \\q\\#\\!\n");
        assert_eq!(
            got,
            vec![kv("my key=x:y", "a\tb\nc\\d=e", 1), kv("u", "\u{e9}A\u{20ac}", 2), kv("other", "q#!", 3),]
        );
    }

    #[test]
    fn surrogate_pairs_combine() {
        assert_eq!(entries(b"emoji = \\uD83D\\uDE00\n"), vec![kv("emoji", "\u{1F600}", 1)]);
    }

    #[test]
    fn bytes_are_iso_8859_1() {
        // 0xE9 is 'é' in ISO-8859-1; 0x80 is U+0080 (windows-1252 would give '€').
        assert_eq!(entries(b"name = caf\xe9\x80\n"), vec![kv("name", "caf\u{e9}\u{80}", 1)]);
        // UTF-8 bytes become mojibake, exactly like Java.
        assert_eq!(entries("name = é\n".as_bytes()), vec![kv("name", "\u{c3}\u{a9}", 1)]);
    }

    #[test]
    fn duplicates_are_all_returned_in_order() {
        assert_eq!(entries(b"a=1\na=2\n"), vec![kv("a", "1", 1), kv("a", "2", 2)]);
    }

    #[test]
    fn malformed_unicode_escapes_are_reported_with_their_line_and_parsing_continues() {
        let (entries, errors) = parse(b"a = ok\nb = \\u12G4\nc = \\u12\nd = \\uD800x\ne = fine\n");
        assert_eq!(entries.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(), ["a", "e"]);
        assert_eq!(
            errors,
            vec![
                SyntaxError { line: 2, problem: SyntaxProblem::MalformedUnicodeEscape { found: "12G4".into() } },
                SyntaxError { line: 3, problem: SyntaxProblem::MalformedUnicodeEscape { found: "12".into() } },
                SyntaxError { line: 4, problem: SyntaxProblem::UnpairedSurrogate { unit: 0xD800 } },
            ]
        );
        assert!(errors[0].to_string().contains("line 2"));
    }

    #[test]
    fn no_trailing_newline_and_empty_input() {
        assert_eq!(entries(b"a=1"), vec![kv("a", "1", 1)]);
        assert_eq!(entries(b""), vec![]);
        assert_eq!(entries(b"\n\n  \n"), vec![]);
    }
}
