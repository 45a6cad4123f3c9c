//! KPL deaggregation (src/stream/kpl.rs).
//!
//! Byte 0 of the input picks a mode:
//! - 0: the rest is a Kinesis record as received (almost never passes the MD5 check, so this
//!   covers the magic/length/digest checks);
//! - 1: the rest is the protobuf body, wrapped as magic + body + MD5(body), so the protobuf
//!   reader itself sees arbitrary bytes;
//! - 2: the rest drives a structured aggregate (tables, records, unknown fields) that is
//!   encoded here and must decode to exactly what was encoded.
//!
//! In every mode `expand` (with and without a shard hash range taken from the input) must
//! deliver either the record as it is, all user records with sub-sequence numbers 0..n, or
//! nothing (the whole aggregate outside the range); and must never panic.
#![no_main]

use arbitrary::{Arbitrary, Result, Unstructured};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use md5::{Digest, Md5};
use multilangd_fuzz::sequence::SequenceNumber;
use multilangd_fuzz::stream::kpl::{decode, expand, has_magic, HashRange, NotAggregated, UserRecord, MAGIC};

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7F) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn len_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(out, field << 3 | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
    varint(out, field << 3);
    varint(out, v);
}

fn wrap(body: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(body);
    out.extend_from_slice(&Md5::digest(body));
    out
}

/// An unknown field the decoder must skip (varint, fixed64, length-delimited, fixed32).
fn unknown_field(u: &mut Unstructured<'_>, out: &mut Vec<u8>) -> Result<()> {
    let field = u.int_in_range(5_u64..=1000)?;
    match u.int_in_range(0_u8..=3)? {
        0 => varint_field(out, field, u64::arbitrary(u)?),
        1 => {
            varint(out, field << 3 | 1);
            out.extend_from_slice(&u.bytes(8)?.to_vec());
        }
        2 => len_field(out, field, <&[u8]>::arbitrary(u)?),
        _ => {
            varint(out, field << 3 | 5);
            out.extend_from_slice(&u.bytes(4)?.to_vec());
        }
    }
    Ok(())
}

/// A structured aggregate and the user records it must decode to (`None`: it refers to a
/// table entry that does not exist, so it is malformed).
fn structured(u: &mut Unstructured<'_>) -> Result<(Vec<u8>, Option<Vec<UserRecord>>)> {
    let pks: Vec<String> = Vec::arbitrary(u)?;
    let ehks: Vec<String> = Vec::arbitrary(u)?;
    let mut body = Vec::new();
    for pk in &pks {
        len_field(&mut body, 1, pk.as_bytes());
    }
    for ehk in &ehks {
        len_field(&mut body, 2, ehk.as_bytes());
    }
    let mut expected = Some(Vec::new());
    for _ in 0..u.int_in_range(0_u8..=20)? {
        let pk = u.int_in_range(0_u64..=pks.len() as u64)?;
        let ehk = if bool::arbitrary(u)? { Some(u.int_in_range(0_u64..=ehks.len() as u64)?) } else { None };
        let data: Vec<u8> = Vec::arbitrary(u)?;
        let mut record = Vec::new();
        varint_field(&mut record, 1, pk);
        if let Some(ehk) = ehk {
            varint_field(&mut record, 2, ehk);
        }
        if bool::arbitrary(u)? {
            unknown_field(u, &mut record)?;
        }
        len_field(&mut record, 3, &data);
        if bool::arbitrary(u)? {
            // A tag: key and value.
            let mut tag = Vec::new();
            len_field(&mut tag, 1, b"k");
            len_field(&mut tag, 2, b"v");
            len_field(&mut record, 4, &tag);
        }
        len_field(&mut body, 3, &record);
        if bool::arbitrary(u)? {
            unknown_field(u, &mut body)?;
        }
        let user = match (pks.get(pk as usize), ehk.map(|i| ehks.get(i as usize))) {
            (Some(pk), None) => {
                Some(UserRecord { partition_key: pk.clone(), explicit_hash_key: None, data: data.into() })
            }
            (Some(pk), Some(Some(ehk))) => {
                Some(UserRecord { partition_key: pk.clone(), explicit_hash_key: Some(ehk.clone()), data: data.into() })
            }
            _ => None,
        };
        expected = match (expected, user) {
            (Some(mut all), Some(user)) => {
                all.push(user);
                Some(all)
            }
            _ => None,
        };
    }
    Ok((wrap(&body), expected))
}

fn check_expand(data: &[u8], range: Option<HashRange>) {
    let seq = SequenceNumber::parse("49590338271490256608559692538361571095921575989136588898").expect("digits");
    let bytes = Bytes::copy_from_slice(data);
    let records = expand(bytes.clone(), "container-key".to_owned(), &seq, 1_700_000_000_000, range);
    let plain = records.len() == 1 && records[0].data == bytes && records[0].partition_key == "container-key";
    match decode(&bytes) {
        _ if !has_magic(data) => assert!(plain, "a record without the magic is delivered as is"),
        Err(_) => assert!(plain, "an undecodable aggregate is delivered as is"),
        Ok(users) => {
            let all = records.len() == users.len()
                && records.iter().zip(&users).enumerate().all(|(i, (r, u))| {
                    r.sub_sequence_number == i as u64 && r.data == u.data && r.partition_key == u.partition_key
                });
            match range {
                None => assert!(all, "every user record, in order"),
                Some(_) => assert!(all || records.is_empty() || plain, "all, nothing, or as is"),
            }
        }
    }
    for r in &records {
        assert_eq!(r.sequence_number, seq);
        assert_eq!(r.approximate_arrival_timestamp_ms, 1_700_000_000_000);
    }
}

fuzz_target!(|input: &[u8]| {
    let [mode, rest @ ..] = input else { return };
    let (record, expected) = match mode % 3 {
        0 => (rest.to_vec(), None),
        1 => (wrap(rest), None),
        _ => {
            let mut u = Unstructured::new(rest);
            let Ok((record, expected)) = structured(&mut u) else { return };
            match (decode(&Bytes::from(record.clone())), &expected) {
                (Ok(users), Some(want)) => assert_eq!(&users, want),
                (Err(NotAggregated::Malformed(_)), None) => {}
                // An empty body: magic + digest only, which is "not an aggregate".
                (Err(NotAggregated::NoMagic), _) if record.len() == MAGIC.len() + 16 => {}
                (got, want) => panic!("decoded {got:?}, expected {want:?}"),
            }
            (record, expected)
        }
    };
    let _ = expected;
    check_expand(&record, None);
    // A range from the last bytes of the input: sometimes everything, sometimes a sliver.
    let tail = input.iter().rev().take(2).fold(0_u128, |acc, b| acc << 8 | u128::from(*b));
    let start = tail << 112;
    check_expand(&record, Some(HashRange { start, end: start.saturating_add(u128::MAX >> 2) }));
    check_expand(&record, Some(HashRange { start: 0, end: u128::MAX }));
});
