//! Classification of one line of child output (`parse_line` in src/protocol/codec.rs).
//!
//! Checks, for any input bytes:
//! - `parse_line` never panics, and its noise reasons display;
//! - a line that does not start (after blanks) with `{` is noise or blank, never a message;
//! - the log excerpt of a line stays bounded (`truncate_for_log`);
//! - round trip: the input, used as the text of a `sequenceNumber` (a JSON string) and of a
//!   `responseFor` in well-formed messages, comes back exactly (with an `action` key placed
//!   before or after it, and with trailing garbage after the object).
#![no_main]

use libfuzzer_sys::fuzz_target;
use multilangd_fuzz::protocol::codec::{parse_line, truncate_for_log, ParsedLine, LOG_PREFIX_BYTES};
use multilangd_fuzz::protocol::{CheckpointRequest, ChildMessage};

fuzz_target!(|data: &[u8]| {
    let parsed = parse_line(data);
    match &parsed {
        ParsedLine::Noise(reason) => {
            let _ = reason.to_string();
        }
        ParsedLine::Blank | ParsedLine::Message(_) => {}
    }
    let first = data.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\x0b' | b'\x0c'));
    if first != Some(&b'{') {
        assert!(!matches!(parsed, ParsedLine::Message(_)), "{parsed:?}");
    }
    // Each byte of the prefix becomes at most 3 bytes (U+FFFD), plus the "... (N bytes)" marker.
    assert!(truncate_for_log(data).len() <= 3 * LOG_PREFIX_BYTES + 32);

    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(json) = serde_json::to_string(text) else { return };
    for line in [
        format!(r#"{{"action":"checkpoint","sequenceNumber":{json}}}"#),
        format!(r#"{{"sequenceNumber":{json},"subSequenceNumber":null,"action":"checkpoint"}} trailing {{"#),
    ] {
        let expected = ParsedLine::Message(ChildMessage::Checkpoint(CheckpointRequest {
            sequence_number: Some(text.to_owned()),
            sub_sequence_number: None,
        }));
        assert_eq!(parse_line(line.as_bytes()), expected, "{line}");
    }
    let line = format!(r#"  {{"responseFor":{json},"action":"status"}}"#);
    assert_eq!(
        parse_line(line.as_bytes()),
        ParsedLine::Message(ChildMessage::Status { response_for: Some(text.to_owned()) }),
        "{line}"
    );
});
