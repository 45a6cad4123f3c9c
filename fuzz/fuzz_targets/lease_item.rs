//! The lease-item decoder (`decode_lease` in src/lease/item.rs), on items built from the
//! input: known attribute names (and arbitrary ones) with values of every DynamoDB type,
//! numbers and sequence numbers often well-formed.
//!
//! Checks: no panic; a non-lease `entityType` is the only way to get `Ok(None)`; a decoded
//! lease written back in the table format decodes to the same lease.
#![no_main]

use std::collections::HashMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use multilangd_fuzz::lease::item::{attr, decode_lease, Attr, Lease, ENTITY_TYPE_LEASE};

const NAMES: [&str; 16] = [
    attr::LEASE_KEY,
    attr::LEASE_OWNER,
    attr::LEASE_COUNTER,
    attr::CHECKPOINT,
    attr::CHECKPOINT_SUB_SEQUENCE,
    attr::PENDING_CHECKPOINT,
    attr::PENDING_CHECKPOINT_SUB_SEQUENCE,
    attr::PENDING_CHECKPOINT_STATE,
    attr::OWNER_SWITCHES,
    attr::PARENT_SHARD_IDS,
    attr::CHILD_SHARD_IDS,
    attr::STARTING_HASH_KEY,
    attr::ENDING_HASH_KEY,
    attr::CHECKPOINT_OWNER,
    attr::ENTITY_TYPE,
    "throughputKBps",
];

const TEXTS: [&str; 6] = ["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP", "SHARD_END", ENTITY_TYPE_LEASE, ""];

#[derive(Arbitrary, Debug)]
enum Name {
    Known(u8),
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum Text {
    Digits(u128),
    Known(u8),
    Any(String),
}

impl Text {
    fn render(self) -> String {
        match self {
            Self::Digits(n) => n.to_string(),
            Self::Known(i) => TEXTS[usize::from(i) % TEXTS.len()].to_owned(),
            Self::Any(s) => s,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Value {
    S(Text),
    N(Text),
    B(Vec<u8>),
    Ss(Vec<String>),
    Null,
    Bool,
}

/// An owned attribute value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    S(String),
    N(String),
    B(Vec<u8>),
    Ss(Vec<String>),
    Null,
    Bool,
}

fn view(value: &Owned) -> Attr<'_> {
    match value {
        Owned::S(s) => Attr::S(s),
        Owned::N(n) => Attr::N(n),
        Owned::B(b) => Attr::B(b),
        Owned::Ss(v) => Attr::Ss(v),
        Owned::Null => Attr::Null,
        Owned::Bool => Attr::Other("BOOL"),
    }
}

/// The lease in the table format (what `lease_to_item` writes, minus the SDK).
fn encode(lease: &Lease) -> HashMap<String, Owned> {
    let mut item = HashMap::new();
    let mut put = |name: &str, value: Owned| {
        item.insert(name.to_owned(), value);
    };
    put(attr::LEASE_KEY, Owned::S(lease.key.clone()));
    put(attr::LEASE_COUNTER, Owned::N(lease.counter.to_string()));
    put(attr::OWNER_SWITCHES, Owned::N(lease.owner_switches_since_checkpoint.to_string()));
    put(attr::CHECKPOINT, Owned::S(lease.checkpoint.position.as_str().to_owned()));
    put(attr::CHECKPOINT_SUB_SEQUENCE, Owned::N(lease.checkpoint.sub_sequence.to_string()));
    put(attr::ENTITY_TYPE, Owned::S(ENTITY_TYPE_LEASE.to_owned()));
    if let Some(owner) = &lease.owner {
        put(attr::LEASE_OWNER, Owned::S(owner.clone()));
    }
    if !lease.parent_shard_ids.is_empty() {
        put(attr::PARENT_SHARD_IDS, Owned::Ss(lease.parent_shard_ids.iter().cloned().collect()));
    }
    if !lease.child_shard_ids.is_empty() {
        put(attr::CHILD_SHARD_IDS, Owned::Ss(lease.child_shard_ids.iter().cloned().collect()));
    }
    if let Some(range) = &lease.hash_key_range {
        put(attr::STARTING_HASH_KEY, Owned::S(range.starting.clone()));
        put(attr::ENDING_HASH_KEY, Owned::S(range.ending.clone()));
    }
    if let Some(pending) = &lease.pending_checkpoint {
        put(attr::PENDING_CHECKPOINT, Owned::S(pending.position.as_str().to_owned()));
        put(attr::PENDING_CHECKPOINT_SUB_SEQUENCE, Owned::N(pending.sub_sequence.to_string()));
    }
    if let Some(state) = &lease.pending_checkpoint_state {
        put(attr::PENDING_CHECKPOINT_STATE, Owned::B(state.clone()));
    }
    if let Some(owner) = &lease.checkpoint_owner {
        put(attr::CHECKPOINT_OWNER, Owned::S(owner.clone()));
    }
    item
}

fuzz_target!(|attributes: Vec<(Name, Value)>| {
    let mut item = HashMap::new();
    for (name, value) in attributes {
        let name = match name {
            Name::Known(i) => NAMES[usize::from(i) % NAMES.len()].to_owned(),
            Name::Any(s) => s,
        };
        let value = match value {
            Value::S(t) => Owned::S(t.render()),
            Value::N(t) => Owned::N(t.render()),
            Value::B(b) => Owned::B(b),
            Value::Ss(v) => Owned::Ss(v),
            Value::Null => Owned::Null,
            Value::Bool => Owned::Bool,
        };
        item.insert(name, value);
    }
    match decode_lease(|name| item.get(name).map(view)) {
        Ok(None) => match item.get(attr::ENTITY_TYPE) {
            Some(Owned::S(entity)) => assert_ne!(entity, ENTITY_TYPE_LEASE),
            other => panic!("skipped as a non-lease item with entityType {other:?}"),
        },
        Ok(Some(lease)) => {
            assert_eq!(Some(&Owned::S(lease.key.clone())), item.get(attr::LEASE_KEY));
            let again = encode(&lease);
            let decoded = decode_lease(|name| again.get(name).map(view));
            assert_eq!(decoded, Ok(Some(lease)));
        }
        Err(malformed) => assert!(!malformed.reason.is_empty()),
    }
});
