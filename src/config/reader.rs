//! [`Reader`]: how one key is read. It holds the file's entries by canonical key and collects
//! the problems, the warnings and the resolved values (for the `validate` report) while the
//! sections of [`super::build`] read their keys.
//!
//! Defaults come from the key table only: [`Reader::setting`] and [`Reader::value`] parse the
//! table's [`KeyDefault::Value`] with the same parser as the file's text, and every default
//! that is reported is the table's text.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::keys::{self, KeyDefault, KeySpec, Usage};
use super::values::{valid_for, FromValue};
use super::{CredentialsSpec, Entry, KeyLocation, Origin, Problem, ProviderSpec, Resolved, Warning};

/// A value as found in the file.
#[derive(Debug, Clone)]
pub(super) struct Value {
    /// The key as written.
    pub(super) written: String,
    /// The trimmed value.
    pub(super) text: String,
    /// Its (first) line.
    pub(super) line: usize,
}

/// The table entry of a key the code names (a bug if it is missing).
pub(super) fn spec(key: &'static str) -> &'static KeySpec {
    keys::lookup(key).unwrap_or_else(|| panic!("invariant: `{key}` is in keys::KEYS"))
}

/// The table default of `key`, parsed as a `T` like a value from the file.
pub(super) fn table_default<T: FromValue>(key: &'static str) -> T {
    let spec = spec(key);
    let parsed = match spec.default {
        KeyDefault::Value { value, .. } => T::from_value(spec.ty, value),
        KeyDefault::Required(_) | KeyDefault::Unset(_) | KeyDefault::Derived(_) => None,
    };
    // keys::tests::default_values_are_valid_for_their_types checks every table default.
    parsed.unwrap_or_else(|| panic!("invariant: keys::KEYS has a default value of the right type for `{key}`"))
}

/// The text of `key`'s table default (`(none)`, `2147483647 (no limit)`, ...).
pub(super) fn default_text(key: &'static str) -> String {
    spec(key).default.to_string()
}

pub(super) fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

pub(super) fn to_u32(v: i64) -> u32 {
    u32::try_from(v.clamp(0, i64::from(u32::MAX))).unwrap_or(u32::MAX)
}

/// Reads the keys of one properties file.
pub(super) struct Reader {
    path: PathBuf,
    values: HashMap<&'static str, Value>,
    problems: Vec<Problem>,
    warnings: Vec<Warning>,
    resolved: Vec<Resolved>,
    consumed: Vec<&'static str>,
}

/// What a [`Reader`] collected.
pub(super) struct Findings {
    /// The properties file.
    pub(super) path: PathBuf,
    /// Fatal problems, in line order (file-level problems last).
    pub(super) problems: Vec<Problem>,
    /// Warnings, in line order.
    pub(super) warnings: Vec<Warning>,
    /// Every reported key, in table order.
    pub(super) resolved: Vec<Resolved>,
    /// Where each key set in the file is.
    pub(super) locations: BTreeMap<&'static str, KeyLocation>,
}

impl Reader {
    /// A reader of `entries` (in file order; a later duplicate wins with a warning).
    /// `problems` are those found before (syntax errors).
    pub(super) fn new(path: &Path, problems: Vec<Problem>, entries: Vec<Entry>) -> Self {
        let mut reader = Self {
            path: path.to_owned(),
            values: HashMap::new(),
            problems,
            warnings: Vec::new(),
            resolved: Vec::new(),
            consumed: Vec::new(),
        };
        reader.ingest(entries);
        reader
    }

    pub(super) fn warn(&mut self, line: Option<usize>, key: Option<&str>, message: impl Into<String>) {
        self.warnings.push(Warning {
            path: self.path.clone(),
            line,
            key: key.map(str::to_owned),
            message: message.into(),
        });
    }

    pub(super) fn problem(&mut self, line: Option<usize>, key: Option<&str>, message: impl Into<String>) {
        self.problems.push(Problem { line, key: key.map(str::to_owned), message: message.into() });
    }

    /// Files every entry under its canonical key; unknown keys and duplicates are warnings.
    fn ingest(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            if entry.key.is_empty() {
                self.warn(
                    Some(entry.line),
                    None,
                    format!("entry without a key ignored (value `{}`)", entry.value.trim()),
                );
                continue;
            }
            let Some(spec) = keys::canonical(&entry.key) else {
                let hint = keys::suggest(&entry.key)
                    .map(|s| format!(" (did you mean `{s}`? keys are case-sensitive)"))
                    .unwrap_or_default();
                self.warn(Some(entry.line), Some(&entry.key), format!("unknown key ignored{hint}"));
                continue;
            };
            let value = Value { written: entry.key, text: entry.value.trim().to_owned(), line: entry.line };
            if let Some(old) = self.values.insert(spec.name, value.clone()) {
                let message = if old.written == value.written {
                    format!("set again; this value wins over line {}", old.line)
                } else {
                    format!("sets the same key as `{}` on line {}; this later value wins", old.written, old.line)
                };
                self.warn(Some(value.line), Some(&value.written), message);
            }
        }
    }

    /// Whether a key is set to a non-empty value.
    pub(super) fn is_set(&self, key: &str) -> bool {
        self.values.get(key).is_some_and(|v| !v.text.is_empty())
    }

    /// The line a key is set on, if it is.
    pub(super) fn line_of(&self, key: &str) -> Option<usize> {
        self.values.get(key).map(|v| v.line)
    }

    /// The trimmed value of a key, marking it consumed. An empty value counts as not set
    /// (with a warning).
    pub(super) fn raw(&mut self, key: &'static str) -> Option<Value> {
        self.consumed.push(key);
        let value = self.values.get(key)?.clone();
        if value.text.is_empty() {
            self.warn(Some(value.line), Some(&value.written), "empty value; treated as not set");
            return None;
        }
        Some(value)
    }

    pub(super) fn invalid(&mut self, value: &Value, expected: impl fmt::Display) {
        self.problem(
            Some(value.line),
            Some(&value.written),
            format!("invalid value `{}`: expected {expected}", value.text),
        );
    }

    // ---- Reading a key from the file

    /// Reads a key with `parse`; a failure is a problem naming the accepted values.
    pub(super) fn parsed<T>(&mut self, key: &'static str, parse: impl FnOnce(&str) -> Option<T>) -> Option<(T, usize)> {
        let value = self.raw(key)?;
        match parse(&value.text) {
            Some(v) => Some((v, value.line)),
            None => {
                self.invalid(&value, spec(key).ty.accepted());
                None
            }
        }
    }

    /// The value of a key as a `T`, with its line; `None` when not set or invalid (a problem).
    pub(super) fn get<T: FromValue>(&mut self, key: &'static str) -> Option<(T, usize)> {
        let ty = spec(key).ty;
        self.parsed(key, |text| T::from_value(ty, text))
    }

    /// The text of a key, with its line.
    pub(super) fn text(&mut self, key: &'static str) -> Option<(String, usize)> {
        self.raw(key).map(|v| (v.text, v.line))
    }

    /// A key that must be set; missing or empty is a file-level problem.
    pub(super) fn required(&mut self, key: &'static str, example: &str) -> Option<(String, usize)> {
        let got = self.text(key);
        if got.is_none() {
            self.problem(None, Some(key), format!("required key is missing or empty, e.g. `{key} = {example}`"));
        }
        got
    }

    pub(super) fn credentials(&mut self, key: &'static str) -> Option<(CredentialsSpec, usize)> {
        let value = self.raw(key)?;
        match CredentialsSpec::parse(&value.text) {
            Ok((spec, warnings)) => {
                for w in warnings {
                    self.warn(Some(value.line), Some(&value.written), w);
                }
                if spec.providers.contains(&ProviderSpec::SystemProperties) {
                    self.warn(
                        Some(value.line),
                        Some(&value.written),
                        "there are no JVM system properties: the system-properties provider reads \
                         AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN from the environment",
                    );
                }
                Some((spec, value.line))
            }
            Err(e) => {
                self.problem(Some(value.line), Some(&value.written), format!("invalid value `{}`: {e}", value.text));
                None
            }
        }
    }

    /// Two keys for one setting: the specific one wins (with a warning when they differ).
    pub(super) fn either(
        &mut self,
        specific: &'static str,
        general: &'static str,
    ) -> Option<(String, usize, &'static str)> {
        let s = self.get::<String>(specific);
        let g = self.get::<String>(general);
        match (s, g) {
            (Some((sv, sl)), Some((gv, gl))) => {
                if sv != gv {
                    self.warn(Some(gl), Some(general), format!("overridden by `{specific}` on line {sl}"));
                }
                Some((sv, sl, specific))
            }
            (Some((v, l)), None) => Some((v, l, specific)),
            (None, Some((v, l))) => Some((v, l, general)),
            (None, None) => None,
        }
    }

    // ---- Reporting a resolved value

    pub(super) fn record(&mut self, key: &'static str, value: impl fmt::Display, origin: Origin) {
        // A credentials provider value may carry an assume-role external id (a secret).
        let value = super::credentials::hide_external_ids(&value.to_string());
        self.resolved.push(Resolved { key, value, origin });
    }

    /// Reports a key that is not set: its table default.
    pub(super) fn record_default(&mut self, key: &'static str) {
        self.record(key, default_text(key), Origin::Default);
    }

    /// Reports a key that is not set and whose table default is derived from another key:
    /// `value` is what it derives to, the origin names the table's rule.
    pub(super) fn record_derived(&mut self, key: &'static str, value: impl fmt::Display) {
        let KeyDefault::Derived(how) = spec(key).default else {
            panic!("invariant: keys::KEYS has a derived default for `{key}`")
        };
        self.record(key, value, Origin::Derived(how));
    }

    // ---- A key's value or its table default

    /// The file's value of `key`, else its table default; reported.
    pub(super) fn setting<T: FromValue + fmt::Display>(&mut self, key: &'static str) -> T {
        match self.get(key) {
            Some((v, line)) => {
                self.record(key, &v, Origin::Line(line));
                v
            }
            None => {
                self.record_default(key);
                table_default(key)
            }
        }
    }

    /// The file's value of `key`, else its table default; not reported (keys without effect).
    pub(super) fn value<T: FromValue>(&mut self, key: &'static str) -> T {
        self.get(key).map_or_else(|| table_default(key), |(v, _)| v)
    }

    /// The file's value of a key without a default value; reported (`(none)` when not set).
    pub(super) fn optional<T: FromValue + fmt::Display>(&mut self, key: &'static str) -> Option<T> {
        match self.get(key) {
            Some((v, line)) => {
                self.record(key, &v, Origin::Line(line));
                Some(v)
            }
            None => {
                self.record_default(key);
                None
            }
        }
    }

    /// A per-client override of another key's value (`inherited`, as reported for that key):
    /// the file's value, or nothing; reported either way.
    pub(super) fn client_override(&mut self, key: &'static str, inherited: &str) -> Option<String> {
        match self.get::<String>(key) {
            Some((v, line)) => {
                self.record(key, &v, Origin::Line(line));
                Some(v)
            }
            None => {
                self.record_derived(key, inherited);
                None
            }
        }
    }

    /// [`Self::setting`] of a whole number key as a `u32` (clamped).
    pub(super) fn u32_setting(&mut self, key: &'static str) -> u32 {
        to_u32(self.setting(key))
    }

    /// [`Self::setting`] of a milliseconds key.
    pub(super) fn millis_setting(&mut self, key: &'static str) -> Duration {
        millis(self.setting(key))
    }

    // ---- Everything else

    /// The keys no section read: each one set is validated; rejected keys are problems, keys
    /// without effect are warnings. Returns the keys without effect that are set, with their
    /// line.
    pub(super) fn check_remaining_keys(&mut self) -> Vec<(String, usize)> {
        let mut present: Vec<(&'static str, Value)> = self.values.iter().map(|(k, v)| (*k, v.clone())).collect();
        present.sort_by_key(|(_, v)| v.line);
        let mut unused_keys = Vec::new();
        for (key, value) in present {
            let spec = spec(key);
            match spec.usage {
                Usage::Used => {}
                Usage::Rejected(why) => {
                    self.problem(Some(value.line), Some(&value.written), format!("not supported: {why}"));
                    continue;
                }
                Usage::NotUsed(why) => {
                    if !value.text.is_empty() {
                        self.warn(Some(value.line), Some(&value.written), format!("accepted but has no effect: {why}"));
                        unused_keys.push((value.written.clone(), value.line));
                    }
                }
            }
            if !self.consumed.contains(&key) && !value.text.is_empty() && !valid_for(spec.ty, &value.text) {
                self.invalid(&value, spec.ty.accepted());
            }
        }
        unused_keys
    }

    /// Everything collected, sorted for people.
    pub(super) fn finish(mut self) -> Findings {
        self.problems.sort_by_key(|p| (p.line.is_none(), p.line));
        self.warnings.sort_by_key(|w| (w.line.is_none(), w.line));
        let order: BTreeMap<&str, usize> = keys::KEYS.iter().enumerate().map(|(i, k)| (k.name, i)).collect();
        self.resolved.sort_by_key(|r| order.get(r.key).copied().unwrap_or(usize::MAX));
        let locations =
            self.values.into_iter().map(|(key, v)| (key, KeyLocation { written: v.written, line: v.line })).collect();
        Findings {
            path: self.path,
            problems: self.problems,
            warnings: self.warnings,
            resolved: self.resolved,
            locations,
        }
    }
}
