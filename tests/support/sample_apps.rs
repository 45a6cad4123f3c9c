//! The test bed's sample applications (taxi-trip producer, ledger record processors), the
//! scripted fake daemon and the reference Java MultiLangDaemon, for end-to-end tests.
//!
//! Ledger files are JSON lines; see `sample-apps/README.md`. Every path handed to a daemon as
//! `executableName` is split on spaces, so the repository and test bed paths must not contain any.

use std::path::{Path, PathBuf};

use super::{python, repo_dir, testbed_dir};

/// A sample record processor (all three write the same ledger format).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Processor {
    /// amazon_kclpy 3.2.0, v3 interface (`sample-apps/python-v3-ledger`).
    PythonV3,
    /// amazon_kclpy 3.2.0, v2 interface (`sample-apps/python-v2`).
    PythonV2,
    /// aws-kcl 2.3.2 for Node.js, VERSION2 style (`sample-apps/node`).
    Node,
}

impl Processor {
    /// Every sample processor.
    pub const ALL: [Processor; 3] = [Processor::PythonV3, Processor::PythonV2, Processor::Node];

    /// The `processor` value the processor writes into its ledger lines.
    pub fn name(self) -> &'static str {
        match self {
            Processor::PythonV3 => "python-v3",
            Processor::PythonV2 => "python-v2",
            Processor::Node => "node",
        }
    }

    /// The processor's command line as separate arguments: the ledger file, optionally an
    /// events file, then `extra` (e.g. `["--checkpoint-every", "5"]`).
    pub fn argv(self, ledger: &Path, events: Option<&Path>, extra: &[&str]) -> Vec<String> {
        let apps = repo_dir().join("sample-apps");
        let mut argv: Vec<String> = match self {
            Processor::PythonV3 => vec![
                python().display().to_string(),
                apps.join("python-v3-ledger/ledger_processor.py").display().to_string(),
            ],
            Processor::PythonV2 => vec![
                python().display().to_string(),
                apps.join("python-v2/ledger_processor_v2.py").display().to_string(),
            ],
            Processor::Node => vec![apps.join("node/run.sh").display().to_string()],
        };
        argv.push("--ledger".into());
        argv.push(ledger.display().to_string());
        if let Some(events) = events {
            argv.push("--events".into());
            argv.push(events.display().to_string());
        }
        argv.extend(extra.iter().map(|s| (*s).to_string()));
        argv
    }

    /// The same command line as one `executableName` value (space-separated). Panics if an
    /// argument contains a space, since a daemon would split it.
    pub fn executable_name(self, ledger: &Path, events: Option<&Path>, extra: &[&str]) -> String {
        let argv = self.argv(ledger, events, extra);
        assert!(
            argv.iter().all(|a| !a.contains(' ')),
            "executableName is split on spaces; these arguments contain one: {argv:?}"
        );
        argv.join(" ")
    }
}

/// `sample-apps/producer/taxi_producer.py` (run it with [`python()`]).
pub fn producer_script() -> PathBuf {
    repo_dir().join("sample-apps/producer/taxi_producer.py")
}

/// `scripts/testbed/fake_daemon.py`: drives one processor through a scripted protocol exchange.
pub fn fake_daemon_script() -> PathBuf {
    repo_dir().join("scripts/testbed/fake_daemon.py")
}

/// `scripts/testbed/compare_ledgers.py SENT RECEIVED...`.
pub fn compare_ledgers_script() -> PathBuf {
    repo_dir().join("scripts/testbed/compare_ledgers.py")
}

/// `scripts/run-java-daemon.sh PROPS`: execs the reference Java MultiLangDaemon 2.5.8 (so the
/// spawned PID is the JVM's), with dummy AWS credentials unless the environment has some.
pub fn run_java_daemon_script() -> PathBuf {
    repo_dir().join("scripts/run-java-daemon.sh")
}

/// The directory of the KCL 2.5.8 jars: `venv-java/lib/python3*/site-packages/amazon_kclpy/jars`
/// (older test beds kept them in `venv/`). `None` if not installed.
pub fn java_jars_dir() -> Option<PathBuf> {
    ["venv-java", "venv"].iter().find_map(|venv| {
        let lib = testbed_dir().join(venv).join("lib");
        std::fs::read_dir(&lib).ok()?.flatten().find_map(|entry| {
            let jars = entry.path().join("site-packages/amazon_kclpy/jars");
            jars.join("amazon-kinesis-client-multilang-2.5.8.jar").is_file().then_some(jars)
        })
    })
}

/// `scripts/run-java3-daemon.sh PROPS`: execs the reference Java MultiLangDaemon 3.1.3.
pub fn run_java3_daemon_script() -> PathBuf {
    repo_dir().join("scripts/run-java3-daemon.sh")
}

/// The directory of the KCL 3.1.3 jars: `venv-java3/lib/python3*/site-packages/amazon_kclpy/jars`.
/// `None` if not installed.
pub fn java3_jars_dir() -> Option<PathBuf> {
    let lib = testbed_dir().join("venv-java3").join("lib");
    std::fs::read_dir(&lib).ok()?.flatten().find_map(|entry| {
        let jars = entry.path().join("site-packages/amazon_kclpy/jars");
        jars.join("amazon-kinesis-client-multilang-3.1.3.jar").is_file().then_some(jars)
    })
}

/// One line of a producer or processor ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Shard the record was written to / read from.
    pub shard_id: String,
    /// Its sequence number (exact digits).
    pub sequence_number: String,
    /// Sub-sequence number (processor ledgers only; `None` in producer ledgers).
    pub sub_sequence_number: Option<i64>,
    /// Partition key.
    pub partition_key: String,
    /// Hex SHA-256 of the record data.
    pub sha256: String,
    /// Which processor wrote the line (`python-v3`, `python-v2`, `node`); `None` for producers.
    pub processor: Option<String>,
    /// PID of the writing processor; `None` for producers.
    pub pid: Option<u32>,
}

/// Reads a ledger; a missing file is empty, and an unterminated last line (a writer still
/// running) is ignored. Panics on malformed lines.
pub fn read_ledger(path: &Path) -> Vec<LedgerEntry> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("cannot read ledger {}: {e}", path.display()),
    };
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("bad ledger line {line:?}: {e}"));
            let text =
                |key: &str| v[key].as_str().unwrap_or_else(|| panic!("ledger line without {key}: {line}")).to_string();
            LedgerEntry {
                shard_id: text("shardId"),
                sequence_number: text("sequenceNumber"),
                sub_sequence_number: v["subSequenceNumber"].as_i64(),
                partition_key: text("partitionKey"),
                sha256: text("sha256"),
                processor: v["processor"].as_str().map(str::to_string),
                pid: v["pid"].as_u64().and_then(|p| u32::try_from(p).ok()),
            }
        })
        .collect()
}
