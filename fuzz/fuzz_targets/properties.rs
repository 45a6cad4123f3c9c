//! The `.properties` parser (src/config/properties.rs).
//!
//! Checks, for any input bytes:
//! - parsing never panics, and every entry and error names a line that exists;
//! - round trip: writing every parsed entry back as `escaped key=escaped value` and parsing
//!   that text again yields the same keys and values (so the unescaping, continuation and
//!   key/value splitting rules agree with their inverse).
#![no_main]

use libfuzzer_sys::fuzz_target;
use multilangd_fuzz::config::properties::parse;

/// Escapes `s` so that the parser reads it back unchanged (as key or value).
fn escape(s: &str, out: &mut Vec<u8>) {
    for c in s.chars() {
        match c {
            '\\' => out.extend_from_slice(b"\\\\"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            ' ' | '=' | ':' | '#' | '!' => {
                out.push(b'\\');
                out.push(c as u8);
            }
            '\u{21}'..='\u{7e}' => out.push(c as u8),
            _ => {
                let mut units = [0_u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.extend_from_slice(format!("\\u{unit:04X}").as_bytes());
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (entries, errors) = parse(data);
    // Physical lines: terminators are \n, \r\n and a lone \r.
    let mut lines = 1;
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\n' => lines += 1,
            b'\r' => {
                lines += 1;
                if data.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    for entry in &entries {
        assert!(entry.line >= 1 && entry.line <= lines, "entry line {} of {lines}", entry.line);
    }
    for error in &errors {
        assert!(error.line >= 1 && error.line <= lines, "error line {} of {lines}", error.line);
        let _ = error.to_string();
    }

    let mut text = Vec::new();
    for entry in &entries {
        escape(&entry.key, &mut text);
        text.push(b'=');
        escape(&entry.value, &mut text);
        text.push(b'\n');
    }
    let (again, errors_again) = parse(&text);
    assert!(errors_again.is_empty(), "re-parse errors: {errors_again:?}");
    assert_eq!(again.len(), entries.len());
    for (n, (a, b)) in entries.iter().zip(&again).enumerate() {
        assert_eq!((&a.key, &a.value), (&b.key, &b.value), "entry {n}");
        assert_eq!(b.line, n + 1);
    }
});
