//! The syntax of property values: numbers, booleans, enum names, URLs, regions, ARNs, ISO-8601
//! durations and tags, and [`valid_for`], which says whether a text is a value of a
//! [`ValueType`]. Values from the file and the defaults of the key table go through the same
//! functions.

use super::keys::ValueType;
use super::CredentialsSpec;

/// Parses a whole number the way users expect: surrounding whitespace was trimmed, a leading
/// `+` is allowed, nothing else (no `0x`, no decimals, no overflow).
pub(super) fn parse_int(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('+').unwrap_or(text);
    if digits.len() != text.len() && digits.starts_with(['+', '-']) {
        return None;
    }
    digits.parse().ok()
}

pub(super) fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "on" | "1" => Some(true),
        "false" | "no" | "n" | "off" | "0" => Some(false),
        _ => None,
    }
}

pub(super) fn parse_choice(text: &str, names: &'static [&'static str]) -> Option<&'static str> {
    names.iter().copied().find(|n| n.eq_ignore_ascii_case(text))
}

/// An AWS region name: lower-case letters, digits and dashes, starting with a letter.
pub(super) fn is_region(text: &str) -> bool {
    text.len() <= 64
        && text.starts_with(|c: char| c.is_ascii_lowercase())
        && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// An `http://` or `https://` URL with a host and no whitespace.
pub(super) fn is_http_url(text: &str) -> bool {
    let rest = text.strip_prefix("http://").or_else(|| text.strip_prefix("https://"));
    match rest {
        Some(rest) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            !host.is_empty() && !host.starts_with(':') && !text.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

/// `arn:aws[^:]*:kinesis:<region>:<12 digits>:stream/<name>`; returns the stream name.
pub(super) fn stream_arn_name(text: &str) -> Option<&str> {
    let parts: Vec<&str> = text.splitn(6, ':').collect();
    let ["arn", partition, "kinesis", region, account, resource] = parts.as_slice() else {
        return None;
    };
    let name = resource.strip_prefix("stream/")?;
    let name_ok =
        (1..=128).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    (partition.starts_with("aws")
        && is_region(region)
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && name_ok)
        .then_some(name)
}

/// `<stream ARN>/consumer/<name>:<creation timestamp>`.
pub(super) fn is_consumer_arn(text: &str) -> bool {
    let Some((stream, consumer)) = text.split_once("/consumer/") else {
        return false;
    };
    let Some((name, timestamp)) = consumer.rsplit_once(':') else {
        return false;
    };
    stream_arn_name(stream).is_some()
        && !name.is_empty()
        && !timestamp.is_empty()
        && timestamp.bytes().all(|b| b.is_ascii_digit())
}

/// ISO-8601 duration as `java.time.Duration.parse` accepts it (days, hours, minutes, seconds;
/// no negative values).
pub(super) fn is_iso_duration(text: &str) -> bool {
    let upper = text.to_ascii_uppercase();
    let Some(rest) = upper.strip_prefix('P') else {
        return false;
    };
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let units_ok = |s: &str, units: &[char], allow_fraction_last: bool| -> Option<usize> {
        let mut count = 0;
        let mut number = String::new();
        let mut next_unit = 0;
        for c in s.chars() {
            if c.is_ascii_digit() || (allow_fraction_last && c == '.') {
                number.push(c);
                continue;
            }
            let pos = units[next_unit..].iter().position(|&u| u == c)? + next_unit;
            if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
                return None;
            }
            if number.contains('.') && c != 'S' {
                return None;
            }
            number.clear();
            next_unit = pos + 1;
            count += 1;
        }
        number.is_empty().then_some(count)
    };
    let Some(date_units) = units_ok(date, &['D'], false) else {
        return false;
    };
    match time {
        None => date_units > 0,
        Some(t) => units_ok(t, &['H', 'M', 'S'], true).is_some_and(|n| n > 0),
    }
}

pub(super) fn is_tags(text: &str) -> bool {
    text.split(',').all(|pair| {
        let mut kv = pair.splitn(2, '=');
        matches!((kv.next(), kv.next()), (Some(k), Some(v)) if !k.trim().is_empty() && !v.contains('='))
    })
}

/// A listen address: `IP:PORT`, `[IPv6]:PORT`, `localhost:PORT` or a bare `PORT`
/// (→ `127.0.0.1:PORT`). Host names other than `localhost` are not resolved.
#[must_use]
pub fn parse_listen_address(text: &str) -> Option<std::net::SocketAddr> {
    use std::net::{Ipv4Addr, SocketAddr};
    let text = text.trim();
    if let Ok(port) = text.parse::<u16>() {
        return Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    if let Some(port) = text.strip_prefix("localhost:") {
        return port.parse::<u16>().ok().map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, p)));
    }
    text.parse().ok()
}

/// Whether `text` is a value of `ty`.
pub(super) fn valid_for(ty: ValueType, text: &str) -> bool {
    match ty {
        ValueType::Text | ValueType::Command | ValueType::List => true,
        ValueType::Int { min, max } => parse_int(text).is_some_and(|v| (min..=max).contains(&v)),
        ValueType::Millis { min } => parse_int(text).is_some_and(|v| v >= min),
        ValueType::EpochSeconds => parse_int(text).is_some_and(|v| (0..=i64::MAX / 1000).contains(&v)),
        ValueType::Bool => parse_bool(text).is_some(),
        ValueType::Enum(names) => parse_choice(text, names).is_some(),
        ValueType::StreamArn => stream_arn_name(text).is_some(),
        ValueType::ConsumerArn => is_consumer_arn(text),
        ValueType::Url => is_http_url(text),
        ValueType::Region => is_region(text),
        ValueType::Credentials => CredentialsSpec::parse(text).is_ok(),
        ValueType::IsoDuration => is_iso_duration(text),
        ValueType::Tags => is_tags(text),
        ValueType::Decimal => text.parse::<f64>().is_ok_and(|v| v.is_finite() && v >= 0.0),
        ValueType::ListenAddress => parse_listen_address(text).is_some(),
    }
}

/// A Rust type a key's value is read as. The same parse reads the text from the file and the
/// default text of the key table.
pub(super) trait FromValue: Sized {
    /// The value of `text` for a key of type `ty`; `None` when it is not one.
    fn from_value(ty: ValueType, text: &str) -> Option<Self>;
}

/// Whole numbers (`Int`, `Millis`, `EpochSeconds`), within the type's range.
impl FromValue for i64 {
    fn from_value(ty: ValueType, text: &str) -> Option<Self> {
        parse_int(text).filter(|&v| valid_for(ty, &v.to_string()))
    }
}

impl FromValue for bool {
    fn from_value(_: ValueType, text: &str) -> Option<Self> {
        parse_bool(text)
    }
}

/// The canonical (table) spelling of an `Enum` name.
impl FromValue for &'static str {
    fn from_value(ty: ValueType, text: &str) -> Option<Self> {
        match ty {
            ValueType::Enum(names) => parse_choice(text, names),
            _ => None,
        }
    }
}

impl FromValue for std::net::SocketAddr {
    fn from_value(ty: ValueType, text: &str) -> Option<Self> {
        match ty {
            ValueType::ListenAddress => parse_listen_address(text),
            _ => None,
        }
    }
}

/// The text itself, when it is valid for the type.
impl FromValue for String {
    fn from_value(ty: ValueType, text: &str) -> Option<Self> {
        valid_for(ty, text).then(|| text.to_owned())
    }
}
