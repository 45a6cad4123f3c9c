//! What a valid configuration may ask for that this version of multilangd cannot run.
//!
//! Every start-time refusal that depends only on the configuration is a check in
//! [`UNSUPPORTED`]. [`super::Config::check_runnable`] applies them all, and both
//! `multilangd validate` and [`crate::run`] call it, so the two cannot disagree about a file.
//! docs/configuration.md lists the checks ([`markdown_list`]; a unit test keeps it in sync).

use super::{Config, Problem};

/// One start-time refusal.
#[derive(Debug, Clone, Copy)]
pub struct Unsupported {
    /// The key the refusal points at (its line when the key is set in the file; the file
    /// otherwise).
    pub key: &'static str,
    /// When it applies, for the documentation.
    pub when: &'static str,
    /// The refusal's message for a configuration, or `None` when it does not apply.
    pub check: fn(&Config) -> Option<String>,
}

/// Every start-time refusal that depends only on the configuration. Empty since enhanced
/// fan-out (the last one, `retrievalMode` resolving to FANOUT) is implemented.
pub static UNSUPPORTED: &[Unsupported] = &[];

/// The refusals that apply to `config`, each at its key's line when the key is set in the
/// file (named as written), else at file level.
pub(super) fn refusals(config: &Config) -> Vec<Problem> {
    UNSUPPORTED
        .iter()
        .filter_map(|refusal| {
            let message = (refusal.check)(config)?;
            let (line, key) = match config.locations.get(refusal.key) {
                Some(at) => (Some(at.line), at.written.clone()),
                None => (None, refusal.key.to_owned()),
            };
            Some(Problem { line, key: Some(key), message })
        })
        .collect()
}

/// The list of refusals for docs/configuration.md.
pub fn markdown_list() -> String {
    if UNSUPPORTED.is_empty() {
        return "None: every valid file can run.\n".to_owned();
    }
    UNSUPPORTED.iter().map(|u| format!("- `{}` {}.\n", u.key, u.when)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{keys, properties};

    fn config(extra: &str) -> Config {
        let text = format!(
            "executableName = app\napplicationName = a\nstreamName = s\n\
             AWSCredentialsProvider = DefaultCredentialsProvider\n{extra}"
        );
        let (entries, _) = properties::parse(text.as_bytes());
        Config::from_entries("/etc/app.properties", entries).unwrap().config
    }

    #[test]
    fn every_refusal_names_a_known_key() {
        for u in UNSUPPORTED {
            assert!(keys::lookup(u.key).is_some(), "{}", u.key);
        }
    }

    #[test]
    fn a_runnable_file_passes() {
        assert!(config("retrievalMode = POLLING\n").check_runnable().is_ok());
        assert!(config("maxRecords = 100\n").check_runnable().is_ok());
        // FANOUT, set or by default (no polling key).
        assert!(config("retrievalMode = fanout\n").check_runnable().is_ok());
        assert!(config("").check_runnable().is_ok());
    }

    /// docs/configuration.md must contain exactly the generated list between the markers.
    #[test]
    fn docs_list_every_refusal() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
        let doc = std::fs::read_to_string(&path).unwrap();
        let (begin, end) = ("<!-- unsupported:begin -->\n", "<!-- unsupported:end -->");
        let start = doc.find(begin).expect("begin marker") + begin.len();
        let stop = doc.find(end).expect("end marker");
        let generated = markdown_list();
        if doc[start..stop] != generated {
            if std::env::var_os("MULTILANGD_BLESS_DOCS").is_some() {
                std::fs::write(&path, format!("{}{}{}", &doc[..start], generated, &doc[stop..])).unwrap();
            } else {
                panic!(
                    "docs/configuration.md's list of refusals is out of date; run \
                     MULTILANGD_BLESS_DOCS=1 cargo test --lib config::unsupported"
                );
            }
        }
    }
}
