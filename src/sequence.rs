//! Positions in a shard: sequence numbers, sentinels and extended sequence numbers.
//!
//! Kinesis sequence numbers are decimal digit strings of up to (at least) 56 digits. They
//! are never converted to floating point or to fixed-width integers; their order is the
//! order of the big integers they spell, which for canonical digit strings is "shorter is
//! smaller, then lexicographic".
//!
//! A checkpoint is an [`ExtendedSequenceNumber`]: a position plus a sub-sequence number
//! (the index of a user record inside a KPL aggregate, 0 otherwise). Positions include
//! the KCL sentinels. Their order follows the Java KCL
//! (`ShardRecordProcessorCheckpointer`): `AT_TIMESTAMP` < `TRIM_HORIZON` < `LATEST` <
//! every real sequence number < `SHARD_END`.

use std::cmp::Ordering;
use std::fmt;

/// A Kinesis sequence number: a non-empty string of ASCII digits, kept exactly as received.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SequenceNumber(String);

impl SequenceNumber {
    /// Parses a sequence number; `None` unless `text` is one or more ASCII digits.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            Some(Self(text.to_owned()))
        } else {
            None
        }
    }

    /// The digits as received.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn significant(&self) -> &str {
        let trimmed = self.0.trim_start_matches('0');
        if trimmed.is_empty() {
            "0"
        } else {
            trimmed
        }
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.significant(), other.significant());
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A position in a shard as stored in the lease table's `checkpoint` attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Position {
    /// `AT_TIMESTAMP`: start at the configured `initialPositionInStreamExtended` time.
    AtTimestamp,
    /// `TRIM_HORIZON`: the oldest record still in the shard.
    TrimHorizon,
    /// `LATEST`: only records written after the reader starts.
    Latest,
    /// A real record position.
    Sequence(SequenceNumber),
    /// `SHARD_END`: the shard was closed and fully processed.
    ShardEnd,
}

impl Position {
    /// The wire/table text: a sentinel name or the digits.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::AtTimestamp => "AT_TIMESTAMP",
            Self::TrimHorizon => "TRIM_HORIZON",
            Self::Latest => "LATEST",
            Self::ShardEnd => "SHARD_END",
            Self::Sequence(s) => s.as_str(),
        }
    }

    /// Parses a sentinel name or a digit string.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "AT_TIMESTAMP" => Some(Self::AtTimestamp),
            "TRIM_HORIZON" => Some(Self::TrimHorizon),
            "LATEST" => Some(Self::Latest),
            "SHARD_END" => Some(Self::ShardEnd),
            other => SequenceNumber::parse(other).map(Self::Sequence),
        }
    }

    /// True for the sentinels that mean "not started yet" (`TRIM_HORIZON`, `LATEST`,
    /// `AT_TIMESTAMP`).
    #[must_use]
    pub fn is_initial_sentinel(&self) -> bool {
        matches!(self, Self::AtTimestamp | Self::TrimHorizon | Self::Latest)
    }

    fn rank(&self) -> i8 {
        match self {
            Self::AtTimestamp => -3,
            Self::TrimHorizon => -2,
            Self::Latest => -1,
            Self::Sequence(_) => 0,
            Self::ShardEnd => 1,
        }
    }
}

impl Ord for Position {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::Sequence(a), Self::Sequence(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for Position {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A position plus the sub-sequence number of a KPL user record (0 when not aggregated).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExtendedSequenceNumber {
    /// The position (sentinel or sequence number).
    pub position: Position,
    /// Index inside a KPL aggregate; 0 for sentinels and plain records.
    pub sub_sequence: u64,
}

impl ExtendedSequenceNumber {
    /// A position with sub-sequence 0.
    #[must_use]
    pub fn new(position: Position) -> Self {
        Self { position, sub_sequence: 0 }
    }

    /// A real record position.
    #[must_use]
    pub fn at(sequence: SequenceNumber, sub_sequence: u64) -> Self {
        Self { position: Position::Sequence(sequence), sub_sequence }
    }

    /// `SHARD_END`.
    #[must_use]
    pub fn shard_end() -> Self {
        Self::new(Position::ShardEnd)
    }

    /// The sequence number, if this is a real record position.
    #[must_use]
    pub fn sequence(&self) -> Option<&SequenceNumber> {
        match &self.position {
            Position::Sequence(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for ExtendedSequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.sub_sequence == 0 {
            write!(f, "{}", self.position)
        } else {
            write!(f, "{}/{}", self.position, self.sub_sequence)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(s: &str) -> Position {
        Position::parse(s).expect("valid position")
    }

    #[test]
    fn numbers_compare_as_big_integers() {
        let a = "49590338271490256608559692538361571095921575989136588898";
        let b = "49590338271490256608559692538361571095921575989136588899";
        assert!(seq(a) < seq(b));
        assert!(seq("9") < seq("10"));
        assert_eq!(seq("007").cmp(&seq("7")), Ordering::Equal);
    }

    #[test]
    fn sentinels_order_like_java() {
        let order = [seq("AT_TIMESTAMP"), seq("TRIM_HORIZON"), seq("LATEST"), seq("0"), seq("SHARD_END")];
        for pair in order.windows(2) {
            assert!(pair[0] < pair[1], "{} < {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn extended_orders_by_position_then_sub_sequence() {
        let a = ExtendedSequenceNumber { position: seq("5"), sub_sequence: 3 };
        let b = ExtendedSequenceNumber { position: seq("5"), sub_sequence: 4 };
        let c = ExtendedSequenceNumber { position: seq("6"), sub_sequence: 0 };
        assert!(a < b && b < c);
    }

    #[test]
    fn rejects_non_digits() {
        for bad in ["", "1.5e3", "-1", " 1", "abc", "trim_horizon"] {
            assert!(Position::parse(bad).is_none(), "{bad:?}");
        }
    }
}
