//! KPL deaggregation: turning one Kinesis record that holds a KPL aggregate into its user
//! records.
//!
//! The Kinesis Producer Library packs many user records into one Kinesis record:
//!
//! ```text
//! F3 89 9A C2 | protobuf AggregatedRecord | MD5(protobuf bytes), 16 bytes
//!
//! message AggregatedRecord {
//!   repeated string partition_key_table     = 1;
//!   repeated string explicit_hash_key_table = 2;
//!   repeated Record records                 = 3;
//! }
//! message Record {
//!   required uint64 partition_key_index     = 1;
//!   optional uint64 explicit_hash_key_index = 2;
//!   required bytes  data                    = 3;
//!   repeated Tag    tags                    = 4;
//! }
//! message Tag { required string key = 1; optional string value = 2; }
//! ```
//!
//! The protobuf is read by a small hand-written decoder (varints, length-delimited fields,
//! unknown fields skipped) instead of generated code. Behaviour follows the Java KCL's
//! `AggregatorUtil`:
//!
//! * a record that is too short, lacks the magic, has a wrong MD5 or does not parse is
//!   delivered as it is (not aggregated, sub-sequence 0);
//! * user records share the container's sequence number and arrival time and get
//!   sub-sequence numbers 0, 1, 2, … in aggregate order;
//! * an aggregate with no user records yields nothing;
//! * with a shard hash-key range, a container in which *any* user record's effective hash key
//!   (explicit hash key, else MD5 of the partition key) falls outside the range is dropped
//!   whole (the KCL does this after resharding).
//!
//! One deliberate difference: the Java KCL keeps a partial result when a user record refers
//! to a partition-key or explicit-hash-key index that is out of range (it logs and stops);
//! here such an aggregate counts as malformed and the container is delivered as it is, so no
//! data is silently lost.

use bytes::Bytes;
use md5::{Digest, Md5};

use crate::model::HashKeyRange;
use crate::sequence::SequenceNumber;

use super::Record;

/// The 4-byte prefix of a KPL aggregate.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// Length of the MD5 trailer.
const DIGEST_LEN: usize = 16;

/// One user record taken out of an aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The user record's partition key.
    pub partition_key: String,
    /// The explicit hash key, if the producer set one.
    pub explicit_hash_key: Option<String>,
    /// The payload (a slice of the container's buffer, not a copy).
    pub data: Bytes,
}

/// Why a record is not (a valid) KPL aggregate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAggregated {
    /// No magic prefix, or nothing after it but (at most) a digest.
    #[error("no KPL magic prefix")]
    NoMagic,
    /// The MD5 trailer does not match the protobuf bytes.
    #[error("KPL digest mismatch")]
    BadDigest,
    /// The protobuf does not parse, misses a required field, or refers to a table entry
    /// that does not exist.
    #[error("malformed KPL aggregate: {0}")]
    Malformed(&'static str),
}

/// A shard's hash-key range as numbers, for the KPL range check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashRange {
    /// First hash key (inclusive).
    pub start: u128,
    /// Last hash key (inclusive).
    pub end: u128,
}

impl HashRange {
    /// Parses the decimal strings of a lease or ListShards range; `None` if either is not a
    /// number in 0..=2^128-1.
    #[must_use]
    pub fn parse(range: &HashKeyRange) -> Option<Self> {
        Some(Self { start: range.starting.parse().ok()?, end: range.ending.parse().ok()? })
    }

    /// True if `key` lies in the range.
    #[must_use]
    pub fn contains(&self, key: u128) -> bool {
        self.start <= key && key <= self.end
    }
}

/// The hash key Kinesis routes a user record by: the explicit hash key if set, else the MD5
/// of the partition key's UTF-8 bytes read as a big-endian unsigned number. `None` if the
/// explicit hash key is not a decimal number that fits 128 bits.
#[must_use]
pub fn effective_hash_key(partition_key: &str, explicit_hash_key: Option<&str>) -> Option<u128> {
    match explicit_hash_key {
        Some(text) => text.parse().ok(),
        None => Some(u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())),
    }
}

/// True if `data` starts with the KPL magic (it may still fail to decode).
#[must_use]
pub fn has_magic(data: &[u8]) -> bool {
    data.starts_with(&MAGIC)
}

/// Decodes a KPL aggregate into its user records.
///
/// # Errors
/// [`NotAggregated`] when `data` is not a valid aggregate; the caller then delivers the
/// record as it is.
pub fn decode(data: &Bytes) -> Result<Vec<UserRecord>, NotAggregated> {
    if data.len() <= MAGIC.len() + DIGEST_LEN || !has_magic(data) {
        return Err(NotAggregated::NoMagic);
    }
    let body_end = data.len() - DIGEST_LEN;
    let body = data.slice(MAGIC.len()..body_end);
    let digest: [u8; DIGEST_LEN] = Md5::digest(&body).into();
    if digest[..] != data[body_end..] {
        return Err(NotAggregated::BadDigest);
    }
    let aggregate = parse_aggregated_record(&body)?;
    aggregate
        .records
        .into_iter()
        .map(|raw| {
            let partition_key = index(&aggregate.partition_keys, raw.partition_key_index)
                .ok_or(NotAggregated::Malformed("partition key index out of range"))?
                .clone();
            let explicit_hash_key = match raw.explicit_hash_key_index {
                Some(i) => Some(
                    index(&aggregate.explicit_hash_keys, i)
                        .ok_or(NotAggregated::Malformed("explicit hash key index out of range"))?
                        .clone(),
                ),
                None => None,
            };
            Ok(UserRecord { partition_key, explicit_hash_key, data: raw.data })
        })
        .collect()
}

fn index(table: &[String], i: u64) -> Option<&String> {
    usize::try_from(i).ok().and_then(|i| table.get(i))
}

/// Expands one Kinesis record into the records a processor sees: its user records if it is
/// a valid KPL aggregate, else the record itself with sub-sequence 0. With `range`, an
/// aggregate holding a user record outside the shard's hash range is dropped whole (see the
/// module docs); an aggregate whose explicit hash key is not a number is delivered as is.
#[must_use]
pub fn expand(
    data: Bytes,
    partition_key: String,
    sequence_number: &SequenceNumber,
    approximate_arrival_timestamp_ms: i64,
    range: Option<HashRange>,
) -> Vec<Record> {
    let plain = |data: Bytes, partition_key: String| Record {
        data,
        partition_key,
        sequence_number: sequence_number.clone(),
        sub_sequence_number: 0,
        approximate_arrival_timestamp_ms,
    };
    if !has_magic(&data) {
        return vec![plain(data, partition_key)];
    }
    let users = match decode(&data) {
        Ok(users) => users,
        Err(reason) => {
            tracing::debug!(sequence_number = %sequence_number, %reason, "record with KPL magic delivered as is");
            return vec![plain(data, partition_key)];
        }
    };
    if let Some(range) = range {
        let mut outside = false;
        for user in &users {
            match effective_hash_key(&user.partition_key, user.explicit_hash_key.as_deref()) {
                Some(key) => outside |= !range.contains(key),
                None => {
                    tracing::warn!(
                        sequence_number = %sequence_number,
                        "KPL aggregate with a non-numeric explicit hash key delivered as is"
                    );
                    return vec![plain(data, partition_key)];
                }
            }
        }
        if outside {
            tracing::warn!(
                sequence_number = %sequence_number,
                user_records = users.len(),
                "KPL aggregate has user records outside the shard's hash range; dropped (as the KCL does)"
            );
            return Vec::new();
        }
    }
    (0_u64..)
        .zip(users)
        .map(|(sub_sequence_number, user)| Record {
            data: user.data,
            partition_key: user.partition_key,
            sequence_number: sequence_number.clone(),
            sub_sequence_number,
            approximate_arrival_timestamp_ms,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// A minimal protobuf (proto2 wire format) reader.

struct RawRecord {
    partition_key_index: u64,
    explicit_hash_key_index: Option<u64>,
    data: Bytes,
}

struct Aggregate {
    partition_keys: Vec<String>,
    explicit_hash_keys: Vec<String>,
    records: Vec<RawRecord>,
}

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_START_GROUP: u8 = 3;
const WIRE_END_GROUP: u8 = 4;
const WIRE_FIXED32: u8 = 5;

/// Nesting limit for (deprecated) groups in unknown fields, like protobuf's recursion limit.
const MAX_GROUP_DEPTH: u32 = 100;

struct Reader {
    buf: Bytes,
    pos: usize,
}

/// A field value as read off the wire.
enum Value {
    Varint(u64),
    Len(Bytes),
    /// Fixed-width or group: skipped, not used by the KPL schema.
    Other,
}

type Parse<T> = Result<T, NotAggregated>;

impl Reader {
    fn new(buf: Bytes) -> Self {
        Self { buf, pos: 0 }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Parse<u64> {
        let mut value = 0_u64;
        for i in 0..10 {
            let byte = *self.buf.get(self.pos).ok_or(NotAggregated::Malformed("truncated varint"))?;
            self.pos += 1;
            if i == 9 && byte > 1 {
                return Err(NotAggregated::Malformed("varint too long"));
            }
            value |= u64::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(NotAggregated::Malformed("varint too long"))
    }

    fn take(&mut self, len: usize) -> Parse<Bytes> {
        let end = self.pos.checked_add(len).filter(|end| *end <= self.buf.len());
        let end = end.ok_or(NotAggregated::Malformed("truncated field"))?;
        let out = self.buf.slice(self.pos..end);
        self.pos = end;
        Ok(out)
    }

    /// Reads a tag: (field number, wire type).
    fn tag(&mut self) -> Parse<(u64, u8)> {
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 {
            return Err(NotAggregated::Malformed("field number 0"));
        }
        #[allow(clippy::cast_possible_truncation)] // masked to 3 bits
        Ok((field, (key & 7) as u8))
    }

    fn value(&mut self, field: u64, wire: u8, depth: u32) -> Parse<Value> {
        match wire {
            WIRE_VARINT => self.varint().map(Value::Varint),
            WIRE_FIXED64 => self.take(8).map(|_| Value::Other),
            WIRE_FIXED32 => self.take(4).map(|_| Value::Other),
            WIRE_LEN => {
                let len = usize::try_from(self.varint()?).map_err(|_| NotAggregated::Malformed("length overflow"))?;
                self.take(len).map(Value::Len)
            }
            WIRE_START_GROUP => {
                if depth >= MAX_GROUP_DEPTH {
                    return Err(NotAggregated::Malformed("groups nested too deeply"));
                }
                loop {
                    if self.at_end() {
                        return Err(NotAggregated::Malformed("unterminated group"));
                    }
                    let (inner, inner_wire) = self.tag()?;
                    if inner_wire == WIRE_END_GROUP {
                        if inner != field {
                            return Err(NotAggregated::Malformed("mismatched end group"));
                        }
                        return Ok(Value::Other);
                    }
                    self.value(inner, inner_wire, depth + 1)?;
                }
            }
            WIRE_END_GROUP => Err(NotAggregated::Malformed("unexpected end group")),
            _ => Err(NotAggregated::Malformed("invalid wire type")),
        }
    }

    /// Calls `on_field` for each (field number, value) in the buffer.
    fn fields(mut self, mut on_field: impl FnMut(u64, Value) -> Parse<()>) -> Parse<()> {
        while !self.at_end() {
            let (field, wire) = self.tag()?;
            let value = self.value(field, wire, 0)?;
            on_field(field, value)?;
        }
        Ok(())
    }
}

fn utf8(bytes: &Bytes) -> String {
    // protobuf-java decodes proto2 strings leniently (invalid sequences become U+FFFD).
    String::from_utf8_lossy(bytes).into_owned()
}

fn parse_aggregated_record(body: &Bytes) -> Parse<Aggregate> {
    let mut out = Aggregate { partition_keys: Vec::new(), explicit_hash_keys: Vec::new(), records: Vec::new() };
    // A known field number with an unexpected wire type is treated as an unknown field,
    // as protobuf-java does.
    Reader::new(body.clone()).fields(|field, value| {
        match (field, value) {
            (1, Value::Len(b)) => out.partition_keys.push(utf8(&b)),
            (2, Value::Len(b)) => out.explicit_hash_keys.push(utf8(&b)),
            (3, Value::Len(b)) => out.records.push(parse_record(b)?),
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

fn parse_record(buf: Bytes) -> Parse<RawRecord> {
    let (mut pk, mut ehk, mut data) = (None, None, None);
    Reader::new(buf).fields(|field, value| {
        match (field, value) {
            (1, Value::Varint(v)) => pk = Some(v),
            (2, Value::Varint(v)) => ehk = Some(v),
            (3, Value::Len(b)) => data = Some(b),
            (4, Value::Len(b)) => parse_tag(b)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(RawRecord {
        partition_key_index: pk.ok_or(NotAggregated::Malformed("record without partition_key_index"))?,
        explicit_hash_key_index: ehk,
        data: data.ok_or(NotAggregated::Malformed("record without data"))?,
    })
}

fn parse_tag(buf: Bytes) -> Parse<()> {
    let mut has_key = false;
    Reader::new(buf).fields(|field, value| {
        has_key |= field == 1 && matches!(value, Value::Len(_));
        Ok(())
    })?;
    if has_key {
        Ok(())
    } else {
        Err(NotAggregated::Malformed("tag without key"))
    }
}

#[cfg(any(test, feature = "test-support"))]
pub mod test_encoder {
    //! A tiny KPL aggregate encoder for tests (unit tests, and integration tests through the
    //! `test-support` feature).

    use md5::{Digest, Md5};

    /// One user record to encode: (partition key index, explicit hash key index, data).
    pub type Entry<'a> = (u64, Option<u64>, &'a [u8]);

    /// Appends a protobuf varint.
    pub fn varint(out: &mut Vec<u8>, mut v: u64) {
        loop {
            let byte = (v & 0x7F) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    /// Appends a length-delimited protobuf field.
    pub fn len_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
        varint(out, field << 3 | 2);
        varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }

    /// Appends a varint protobuf field.
    pub fn varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
        varint(out, field << 3);
        varint(out, v);
    }

    /// The protobuf body of an `AggregatedRecord`.
    pub fn body(pks: &[&str], ehks: &[&str], records: &[Entry<'_>]) -> Vec<u8> {
        let mut out = Vec::new();
        for pk in pks {
            len_field(&mut out, 1, pk.as_bytes());
        }
        for ehk in ehks {
            len_field(&mut out, 2, ehk.as_bytes());
        }
        for (pk, ehk, data) in records {
            let mut rec = Vec::new();
            varint_field(&mut rec, 1, *pk);
            if let Some(ehk) = ehk {
                varint_field(&mut rec, 2, *ehk);
            }
            len_field(&mut rec, 3, data);
            len_field(&mut out, 3, &rec);
        }
        out
    }

    /// Magic + body + MD5(body).
    pub fn wrap(body: &[u8]) -> Vec<u8> {
        let mut out = super::MAGIC.to_vec();
        out.extend_from_slice(body);
        out.extend_from_slice(&Md5::digest(body));
        out
    }

    /// A complete aggregate.
    pub fn aggregate(pks: &[&str], ehks: &[&str], records: &[Entry<'_>]) -> Vec<u8> {
        wrap(&body(pks, ehks, records))
    }
}

#[cfg(test)]
mod tests {
    use super::test_encoder::*;
    use super::*;

    fn seq() -> SequenceNumber {
        SequenceNumber::parse("49590338271490256608559692538361571095921575989136588898").unwrap()
    }

    fn expand_plain(data: Vec<u8>) -> Vec<Record> {
        expand(Bytes::from(data), "container-pk".into(), &seq(), 1_700_000_000_123, None)
    }

    #[test]
    fn plain_record_passes_through() {
        let out = expand_plain(b"hello".to_vec());
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0].data[..], b"hello");
        assert_eq!(out[0].partition_key, "container-pk");
        assert_eq!(out[0].sub_sequence_number, 0);
        assert_eq!(out[0].sequence_number, seq());
        assert_eq!(out[0].approximate_arrival_timestamp_ms, 1_700_000_000_123);
    }

    #[test]
    fn aggregate_is_split_with_sub_sequence_numbers() {
        let data = aggregate(
            &["a", "b"],
            &["12345"],
            &[(0, None, b"one"), (1, Some(0), b"two"), (0, None, b""), (1, None, b"four")],
        );
        let out = expand_plain(data);
        let got: Vec<(&[u8], &str, u64)> =
            out.iter().map(|r| (&r.data[..], r.partition_key.as_str(), r.sub_sequence_number)).collect();
        assert_eq!(got, vec![(&b"one"[..], "a", 0), (b"two", "b", 1), (b"", "a", 2), (b"four", "b", 3)]);
        assert!(out
            .iter()
            .all(|r| r.sequence_number == seq() && r.approximate_arrival_timestamp_ms == 1_700_000_000_123));
        let decoded = decode(&Bytes::from(aggregate(&["a"], &["7"], &[(0, Some(0), b"x")]))).unwrap();
        assert_eq!(decoded[0].explicit_hash_key.as_deref(), Some("7"));
    }

    #[test]
    fn bad_digest_is_delivered_as_is() {
        let mut data = aggregate(&["a"], &[], &[(0, None, b"one")]);
        let last = data.len() - 1;
        data[last] ^= 0xFF;
        assert_eq!(decode(&Bytes::from(data.clone())), Err(NotAggregated::BadDigest));
        let out = expand_plain(data.clone());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, Bytes::from(data));
        assert_eq!(out[0].partition_key, "container-pk");
    }

    #[test]
    fn truncated_protobuf_is_delivered_as_is() {
        let full = body(&["a"], &[], &[(0, None, b"payload")]);
        let truncated = wrap(&full[..full.len() - 3]);
        assert!(matches!(decode(&Bytes::from(truncated.clone())), Err(NotAggregated::Malformed(_))));
        let out = expand_plain(truncated.clone());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, Bytes::from(truncated));
    }

    #[test]
    fn too_short_or_magic_only_is_not_aggregated() {
        for data in [MAGIC.to_vec(), [&MAGIC[..], &[0_u8; 16]].concat(), vec![0xF3, 0x89]] {
            assert_eq!(decode(&Bytes::from(data.clone())), Err(NotAggregated::NoMagic));
            assert_eq!(expand_plain(data.clone())[0].data, Bytes::from(data));
        }
    }

    #[test]
    fn unknown_fields_are_skipped() {
        let mut b = Vec::new();
        varint_field(&mut b, 15, 99); // unknown varint
        len_field(&mut b, 1, b"pk");
        b.extend_from_slice(&[(9 << 3) | 1, 1, 2, 3, 4, 5, 6, 7, 8]); // unknown fixed64
        b.extend_from_slice(&[(10 << 3) | 5, 1, 2, 3, 4]); // unknown fixed32
        b.extend_from_slice(&[(11 << 3) | 3, (1 << 3), 5, (11 << 3) | 4]); // unknown group
        let mut rec = Vec::new();
        varint_field(&mut rec, 1, 0);
        len_field(&mut rec, 7, b"ignored");
        len_field(&mut rec, 3, b"data");
        let mut tag = Vec::new();
        len_field(&mut tag, 1, b"k");
        len_field(&mut tag, 2, b"v");
        len_field(&mut rec, 4, &tag);
        len_field(&mut b, 3, &rec);
        varint_field(&mut b, 2, 5); // known field number, wrong wire type: unknown
        let out = expand_plain(wrap(&b));
        assert_eq!(out.len(), 1);
        assert_eq!((&out[0].data[..], out[0].partition_key.as_str()), (&b"data"[..], "pk"));
    }

    #[test]
    fn missing_required_fields_or_bad_indexes_are_malformed() {
        let no_data = {
            let mut rec = Vec::new();
            varint_field(&mut rec, 1, 0);
            let mut b = Vec::new();
            len_field(&mut b, 1, b"pk");
            len_field(&mut b, 3, &rec);
            wrap(&b)
        };
        let no_pk_index = {
            let mut rec = Vec::new();
            len_field(&mut rec, 3, b"d");
            let mut b = Vec::new();
            len_field(&mut b, 1, b"pk");
            len_field(&mut b, 3, &rec);
            wrap(&b)
        };
        let bad_tag = {
            let mut rec = Vec::new();
            varint_field(&mut rec, 1, 0);
            len_field(&mut rec, 3, b"d");
            len_field(&mut rec, 4, &[]);
            let mut b = Vec::new();
            len_field(&mut b, 1, b"pk");
            len_field(&mut b, 3, &rec);
            wrap(&b)
        };
        for data in [
            no_data,
            no_pk_index,
            bad_tag,
            aggregate(&["a"], &[], &[(1, None, b"x")]),
            aggregate(&["a"], &[], &[(0, Some(0), b"x")]),
            wrap(&[0x80; 11]),
            wrap(&[(1 << 3) | 6]),
            wrap(&[(1 << 3) | 2, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
        ] {
            assert!(matches!(decode(&Bytes::from(data.clone())), Err(NotAggregated::Malformed(_))), "{data:?}");
            let out = expand_plain(data.clone());
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].data, Bytes::from(data));
        }
    }

    #[test]
    fn empty_aggregate_yields_nothing() {
        // A zero-length protobuf leaves nothing but the digest after the magic: like the KCL,
        // that is not an aggregate and is delivered as is.
        assert_eq!(expand_plain(aggregate(&[], &[], &[])).len(), 1);
        // A parsed aggregate without user records yields no records at all.
        assert!(expand_plain(aggregate(&["unused"], &[], &[])).is_empty());
    }

    #[test]
    fn hash_range_filter_drops_whole_container() {
        let md5_of_a = effective_hash_key("a", None).unwrap();
        let inside = HashRange { start: md5_of_a, end: md5_of_a };
        let data = aggregate(&["a"], &["5"], &[(0, None, b"x"), (0, None, b"y")]);
        let out = expand(Bytes::from(data), "pk".into(), &seq(), 0, Some(inside));
        assert_eq!(out.len(), 2);

        let mixed = aggregate(&["a"], &["5"], &[(0, None, b"x"), (0, Some(0), b"y")]);
        assert!(expand(Bytes::from(mixed.clone()), "pk".into(), &seq(), 0, Some(inside)).is_empty());
        let low = HashRange { start: 0, end: 10 };
        assert!(expand(Bytes::from(mixed.clone()), "pk".into(), &seq(), 0, Some(low)).is_empty());
        let all = HashRange { start: 0, end: u128::MAX };
        assert_eq!(expand(Bytes::from(mixed), "pk".into(), &seq(), 0, Some(all)).len(), 2);

        // A non-numeric explicit hash key cannot be placed: delivered as is.
        let bad = aggregate(&["a"], &["not-a-number"], &[(0, Some(0), b"x")]);
        assert_eq!(expand(Bytes::from(bad), "pk".into(), &seq(), 0, Some(all)).len(), 1);
    }

    #[test]
    fn hash_range_parses_lease_strings() {
        let full = HashKeyRange { starting: "0".into(), ending: u128::MAX.to_string() };
        assert_eq!(HashRange::parse(&full), Some(HashRange { start: 0, end: u128::MAX }));
        let too_big = HashKeyRange { starting: "0".into(), ending: "340282366920938463463374607431768211456".into() };
        assert_eq!(HashRange::parse(&too_big), None);
    }

    #[test]
    fn effective_hash_key_is_md5_big_endian() {
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(effective_hash_key("", None), Some(0xd41d8cd98f00b204e9800998ecf8427e));
        assert_eq!(effective_hash_key("x", Some("42")), Some(42));
        assert_eq!(effective_hash_key("x", Some("-1")), None);
    }
}
