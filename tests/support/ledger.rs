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
