//! Comparing ledgers: what the producer sent against what record processors saw.

use std::collections::{BTreeMap, BTreeSet};

use super::sample_apps::LedgerEntry;

/// `a > b` for sequence numbers (big-integer order); every number is after a sentinel
/// such as `TRIM_HORIZON`.
pub fn seq_gt(a: &str, b: &str) -> bool {
    if !b.bytes().all(|c| c.is_ascii_digit()) || b.is_empty() {
        return true;
    }
    (a.len(), a) > (b.len(), b)
}

/// (shard, sequence number) of every entry.
pub fn keys(entries: &[LedgerEntry]) -> BTreeSet<(String, String)> {
    entries.iter().map(|e| (e.shard_id.clone(), e.sequence_number.clone())).collect()
}

/// The highest sequence number per shard.
pub fn last_per_shard(entries: &[LedgerEntry]) -> BTreeMap<String, String> {
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    for e in entries {
        let slot = last.entry(e.shard_id.clone()).or_default();
        if slot.is_empty() || seq_gt(&e.sequence_number, slot) {
            slot.clone_from(&e.sequence_number);
        }
    }
    last
}

/// Every record seen has the payload digest the producer recorded for it.
pub fn assert_digests_match(sent: &[LedgerEntry], seen: &[LedgerEntry]) {
    let digests: BTreeMap<(&str, &str), &str> =
        sent.iter().map(|e| ((e.shard_id.as_str(), e.sequence_number.as_str()), e.sha256.as_str())).collect();
    for e in seen {
        if let Some(digest) = digests.get(&(e.shard_id.as_str(), e.sequence_number.as_str())) {
            assert_eq!(*digest, e.sha256, "payload of {} {} changed on the way", e.shard_id, e.sequence_number);
        }
    }
}

/// Every sent record was seen (at least once) with its payload intact.
pub fn assert_all_delivered(sent: &[LedgerEntry], seen: &[LedgerEntry]) {
    let missing: Vec<_> = keys(sent).difference(&keys(seen)).take(5).cloned().collect();
    assert!(missing.is_empty(), "records never delivered, e.g. {missing:?}");
    assert_digests_match(sent, seen);
}

/// Each processor process (pid) saw each shard's records in increasing sequence order (so each
/// partition key's records in order); a record may repeat only in a later process (a restart
/// from the last checkpoint).
pub fn assert_in_order_per_process(seen: &[LedgerEntry]) {
    type Position<'a> = (&'a str, Option<i64>);
    let mut last: BTreeMap<(Option<u32>, &str), Position<'_>> = BTreeMap::new();
    for e in seen {
        let here = (e.sequence_number.as_str(), e.sub_sequence_number);
        if let Some(prev) = last.insert((e.pid, e.shard_id.as_str()), here) {
            let after = seq_gt(here.0, prev.0) || (here.0 == prev.0 && here.1 > prev.1);
            assert!(after, "process {:?} saw {} {:?} after {:?}", e.pid, e.shard_id, here, prev);
        }
    }
}

/// The distinct shard ids of a ledger, sorted.
pub fn shard_ids(entries: &[LedgerEntry]) -> Vec<String> {
    entries.iter().map(|e| e.shard_id.clone()).collect::<BTreeSet<_>>().into_iter().collect()
}

/// Deliveries beyond the first of each (shard, sequence, sub-sequence) number.
pub fn duplicates(seen: &[LedgerEntry]) -> usize {
    let distinct: BTreeSet<(&str, &str, Option<i64>)> =
        seen.iter().map(|e| (e.shard_id.as_str(), e.sequence_number.as_str(), e.sub_sequence_number)).collect();
    seen.len() - distinct.len()
}

/// The distinct record-processor pids per shard (a restarted processor has a new pid).
pub fn pids_per_shard(seen: &[LedgerEntry]) -> BTreeMap<String, BTreeSet<u32>> {
    let mut pids: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    for e in seen {
        pids.entry(e.shard_id.clone()).or_default().extend(e.pid);
    }
    pids
}

/// One scenario's figures, appended as a JSON line to `$MULTILANGD_RELIABILITY_OUT` when set
/// (scripts/reliability.sh turns them into RELIABILITY.md).
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Scenario name.
    pub scenario: String,
    /// `multilangd` or `java-2.5.8`.
    pub daemon: String,
    /// What was injected.
    pub fault: String,
    /// Records produced.
    pub records: usize,
    /// Records never delivered.
    pub lost: usize,
    /// Extra deliveries.
    pub duplicates: usize,
    /// Records delivered while the fault made delivery unsafe (the scenario defines it).
    pub unsafe_deliveries: Option<usize>,
    /// From the end of the fault to the first new delivery, in ms.
    pub recovery_ms: Option<u128>,
    /// Free-form extra figures.
    pub notes: String,
}

impl Figures {
    /// Appends the figures to `$MULTILANGD_RELIABILITY_OUT` (if set) and prints them.
    pub fn publish(&self) {
        let line = serde_json::json!({
            "scenario": self.scenario,
            "daemon": self.daemon,
            "fault": self.fault,
            "records": self.records,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "unsafe_deliveries": self.unsafe_deliveries,
            "recovery_ms": self.recovery_ms.map(|ms| u64::try_from(ms).unwrap_or(u64::MAX)),
            "notes": self.notes,
        })
        .to_string();
        println!("FIGURES {line}");
        if let Some(path) = std::env::var_os("MULTILANGD_RELIABILITY_OUT") {
            use std::io::Write as _;
            let mut file =
                std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open the figures file");
            writeln!(file, "{line}").expect("write the figures");
        }
    }
}
