//! Leader choice of the KCL 2.x protocol, bit-exact with Java.
//!
//! Java's `DeterministicShuffleShardSyncLeaderDecider` takes the distinct non-null lease
//! owners, sorts them in `String` natural order (UTF-16 code units), shuffles them with
//! `Collections.shuffle(list, new Random(1947))` and makes the first one the leader. Every
//! worker computes the same answer from the same table, so nothing is written. The leader
//! only runs the periodic shard-sync audit. If no lease has an owner, every worker
//! considers itself leader.
//!
//! [`JavaRandom`] reproduces `java.util.Random` (48-bit LCG) exactly; a divergence would
//! give two leaders (harmless duplicate syncs) or none (the audit stops), so the test
//! compares against outputs produced by a real JVM (`tests/fixtures/leader/`).

use std::cmp::Ordering;
use std::collections::BTreeSet;

/// The seed Java uses for the leader shuffle.
pub const LEADER_SEED: i64 = 1947;

/// `java.util.Random`, bit for bit.
#[derive(Debug, Clone)]
pub struct JavaRandom {
    seed: u64,
}

const MULTIPLIER: u64 = 0x5_DEEC_E66D;
const ADDEND: u64 = 0xB;
const MASK: u64 = (1 << 48) - 1;

impl JavaRandom {
    /// `new Random(seed)`.
    #[must_use]
    pub fn new(seed: i64) -> Self {
        Self { seed: (seed.cast_unsigned() ^ MULTIPLIER) & MASK }
    }

    /// `next(bits)`: the top `bits` bits of the next 48-bit state, as a Java int.
    fn next(&mut self, bits: u32) -> i32 {
        self.seed = self.seed.wrapping_mul(MULTIPLIER).wrapping_add(ADDEND) & MASK;
        // Java: (int)(seed >>> (48 - bits)) — truncation to 32 bits is intended.
        #[allow(clippy::cast_possible_truncation)]
        let value = (self.seed >> (48 - bits)) as u32;
        value.cast_signed()
    }

    /// `nextInt(bound)` for `bound > 0`.
    ///
    /// # Panics
    /// If `bound <= 0` (Java throws `IllegalArgumentException`).
    pub fn next_int(&mut self, bound: i32) -> i32 {
        assert!(bound > 0, "bound must be positive");
        let r = self.next(31);
        let m = bound - 1;
        if bound & m == 0 {
            // Power of two: (int)((bound * (long)r) >> 31).
            #[allow(clippy::cast_possible_truncation)]
            return ((i64::from(bound) * i64::from(r)) >> 31) as i32;
        }
        let mut u = r;
        loop {
            let r = u % bound;
            // Java relies on int overflow here: u - r + m < 0 means "redraw".
            if u.wrapping_sub(r).wrapping_add(m) >= 0 {
                return r;
            }
            u = self.next(31);
        }
    }
}

/// Java `String.compareTo`: lexicographic by UTF-16 code unit.
fn java_string_order(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// The owners in the order Java's leader decider produces (first = leader).
#[must_use]
pub fn shuffled_owners<'a>(owners: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let distinct: BTreeSet<&str> = owners.into_iter().collect();
    let mut list: Vec<String> = distinct.into_iter().map(str::to_owned).collect();
    list.sort_by(|a, b| java_string_order(a, b));
    let mut random = JavaRandom::new(LEADER_SEED);
    // Collections.shuffle: for i from size down to 2, swap(i - 1, nextInt(i)).
    for i in (2..=list.len()).rev() {
        let bound = i32::try_from(i).unwrap_or(i32::MAX);
        let j = usize::try_from(random.next_int(bound)).unwrap_or(0);
        list.swap(i - 1, j);
    }
    list
}

/// Whether `worker_id` is the leader given the current lease owners. With no owners at
/// all (empty or fresh table) everyone is leader, as in Java.
#[must_use]
pub fn is_leader<'a>(worker_id: &str, owners: impl IntoIterator<Item = &'a str>) -> bool {
    shuffled_owners(owners).first().is_none_or(|leader| leader == worker_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_random_matches_known_values() {
        // new Random(42).nextInt() sequence starts -1170105035, 234785527 (JDK docs/examples).
        let mut r = JavaRandom::new(42);
        assert_eq!(r.next(32), -1_170_105_035);
        assert_eq!(r.next(32), 234_785_527);
        // new Random(1947): five nextInt(10), three nextInt(1 << 20), one nextInt(MAX_VALUE),
        // printed by a JVM (OpenJDK 17).
        let mut r = JavaRandom::new(1947);
        let mut drawn: Vec<i32> = (0..5).map(|_| r.next_int(10)).collect();
        drawn.extend((0..3).map(|_| r.next_int(1 << 20)));
        drawn.push(r.next_int(i32::MAX));
        assert_eq!(drawn, [3, 5, 5, 9, 2, 504_673, 730_355, 486_233, 1_606_935_565]);
    }

    #[test]
    fn matches_a_real_jvm_on_many_owner_sets() {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/leader");
        let owners = std::fs::read_to_string(fixtures.join("owners.txt")).unwrap();
        let expected = std::fs::read_to_string(fixtures.join("shuffled.txt")).unwrap();
        let mut checked = 0;
        for (input, want) in owners.lines().zip(expected.lines()) {
            let got = shuffled_owners(input.split(',')).join(",");
            assert_eq!(got, want, "owners: {input}");
            checked += 1;
        }
        assert_eq!(checked, 97);
    }

    #[test]
    fn no_owners_means_everyone_leads() {
        assert!(is_leader("me", std::iter::empty()));
        assert!(is_leader("only", ["only", "only"]));
    }
}
