//! The 3.x leader's lease assignment: the `LEASE_COUNT_BASED` strategy of KCL 3.4.3
//! (`kcl3-fanout-users.md` §2.4), with the hand-off fixes of later KCL versions.
//!
//! Each round the leader observes every lease ([`ExpiryTracker`], local monotonic clock, as
//! the 2.x taker) and plans ([`plan_lease_count`]):
//! 1. target = 1 if workers ≥ leases, else ⌈leases / workers⌉, capped by `maxLeasesForWorker`;
//! 2. *available* leases — unowned, expired, or a pending hand-off that did not complete
//!    within `gracefulLeaseHandoffTimeoutMillis + failoverTimeMillis` (KCL#1765/#1718/#1729:
//!    such a lease is never left stuck) — go, oldest first, to the least-loaded active worker
//!    below the target;
//! 3. then, while the most loaded worker holds two or more leases more than the least loaded
//!    one, one of its live leases moves there: by graceful hand-off when enabled, else by
//!    assign. Leases in a hand-off never move again until it completes.
//!
//! Finished leases (`SHARD_END`) are neither assigned nor counted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::lease::Lease;
use crate::sequence::Position;

/// One lease as the leader sees it this round.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseView {
    /// The lease as scanned.
    pub lease: Lease,
    /// Owned, and its counter has not changed for longer than the failover time.
    pub expired: bool,
    /// A hand-off (`checkpointOwner` set) has been pending for longer than the hand-off
    /// timeout plus the failover time.
    pub handoff_expired: bool,
    /// When its counter last changed (`None`: never seen changing); oldest first.
    pub last_change: Option<Instant>,
}

impl LeaseView {
    fn is_finished(&self) -> bool {
        self.lease.checkpoint.position == Position::ShardEnd
    }

    fn is_available(&self) -> bool {
        self.lease.owner.is_none() || self.expired || self.handoff_expired
    }
}

/// Per-lease observation across rounds.
#[derive(Debug, Default)]
pub struct ExpiryTracker {
    /// key → (counter, last change).
    seen: HashMap<String, (u64, Option<Instant>)>,
    /// key → (leaseOwner, checkpointOwner, first seen).
    handoffs: HashMap<String, (Option<String>, String, Instant)>,
}

impl ExpiryTracker {
    /// An empty tracker: the first round after becoming leader treats every owned lease as
    /// just renewed (a new leader waits one failover time before declaring anything expired).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Observes a scan made at `now`.
    pub fn observe(
        &mut self,
        leases: Vec<Lease>,
        now: Instant,
        failover: Duration,
        handoff_timeout: Duration,
    ) -> Vec<LeaseView> {
        let keys: HashSet<&str> = leases.iter().map(|l| l.key.as_str()).collect();
        self.seen.retain(|k, _| keys.contains(k.as_str()));
        self.handoffs.retain(|k, _| keys.contains(k.as_str()));
        let mut views = Vec::with_capacity(leases.len());
        for lease in leases {
            let last_change = match self.seen.get(&lease.key) {
                Some((counter, last)) if *counter == lease.counter => *last,
                Some(_) => Some(now),
                None if lease.owner.is_some() => Some(now),
                None => None,
            };
            self.seen.insert(lease.key.clone(), (lease.counter, last_change));
            let expired = lease.owner.is_some() && last_change.is_none_or(|t| now.duration_since(t) > failover);
            let handoff_expired = match &lease.checkpoint_owner {
                Some(old) => {
                    let entry = self
                        .handoffs
                        .entry(lease.key.clone())
                        .or_insert_with(|| (lease.owner.clone(), old.clone(), now));
                    if entry.0 != lease.owner || entry.1 != *old {
                        *entry = (lease.owner.clone(), old.clone(), now);
                    }
                    now.duration_since(entry.2) > handoff_timeout + failover
                }
                None => {
                    self.handoffs.remove(&lease.key);
                    false
                }
            };
            views.push(LeaseView { lease, expired, handoff_expired, last_change });
        }
        views
    }
}

/// A write the leader makes.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `assign` (conditional on the owner fields as seen).
    Assign {
        /// The lease as seen.
        lease: Lease,
        /// The new owner.
        to: String,
    },
    /// `initiateGracefulHandoff` of a live lease.
    Handoff {
        /// The lease as seen.
        lease: Lease,
        /// The new owner.
        to: String,
    },
}

/// Planning settings.
#[derive(Debug, Clone, Copy)]
pub struct PlanSettings {
    /// `maxLeasesForWorker`.
    pub max_leases_for_worker: usize,
    /// `isGracefulLeaseHandoffEnabled`.
    pub graceful_handoff: bool,
}

/// The fair-share target for `leases` leases over `workers` workers.
#[must_use]
pub fn target(leases: usize, workers: usize, max_leases_for_worker: usize) -> usize {
    if workers == 0 {
        return 0;
    }
    let t = if workers >= leases { 1 } else { leases.div_ceil(workers) };
    t.min(max_leases_for_worker.max(1))
}

/// Plans one LEASE_COUNT_BASED round over `views` for the `active` workers.
#[must_use]
pub fn plan_lease_count(views: &[LeaseView], active: &[String], settings: PlanSettings) -> Vec<Action> {
    if active.is_empty() {
        return Vec::new();
    }
    let live: Vec<&LeaseView> = views.iter().filter(|v| !v.is_finished()).collect();
    let target = target(live.len(), active.len(), settings.max_leases_for_worker);
    let cap = settings.max_leases_for_worker;
    // Current load of each active worker: its live (not available) leases.
    let mut load: BTreeMap<&str, Vec<&LeaseView>> = active.iter().map(|w| (w.as_str(), Vec::new())).collect();
    let mut available: Vec<&LeaseView> = Vec::new();
    for view in &live {
        if view.is_available() {
            available.push(view);
        } else if let Some(owner) = view.lease.owner.as_deref() {
            if let Some(held) = load.get_mut(owner) {
                held.push(view);
            }
        }
    }
    available.sort_by_key(|v| (v.last_change, v.lease.key.clone()));
    let mut counts: BTreeMap<&str, usize> = load.iter().map(|(w, l)| (*w, l.len())).collect();
    let mut actions = Vec::new();

    for view in available {
        let Some((&worker, _)) = counts.iter().filter(|(_, c)| **c < target).min_by_key(|(w, c)| (**c, **w)) else {
            break;
        };
        *counts.entry(worker).or_default() += 1;
        actions.push(Action::Assign { lease: view.lease.clone(), to: worker.to_owned() });
    }

    // Balance: move from the most to the least loaded worker while they differ by 2 or more.
    while let Some((&heavy, &heavy_count)) = counts.iter().max_by_key(|(w, c)| (**c, std::cmp::Reverse(**w))) {
        let Some((&light, &light_count)) = counts.iter().min_by_key(|(w, c)| (**c, **w)) else { break };
        if heavy_count < light_count + 2 || light_count >= cap {
            break;
        }
        let movable = load.get_mut(heavy).and_then(|held| {
            let index = held.iter().position(|v| v.lease.checkpoint_owner.is_none())?;
            Some(held.remove(index))
        });
        let Some(view) = movable else { break };
        *counts.entry(heavy).or_default() -= 1;
        *counts.entry(light).or_default() += 1;
        let action = if settings.graceful_handoff {
            Action::Handoff { lease: view.lease.clone(), to: light.to_owned() }
        } else {
            Action::Assign { lease: view.lease.clone(), to: light.to_owned() }
        };
        actions.push(action);
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequence::ExtendedSequenceNumber;

    const F: Duration = Duration::from_secs(10);
    const H: Duration = Duration::from_secs(30);

    fn lease(key: &str, owner: Option<&str>) -> Lease {
        let mut l = Lease::new(key, ExtendedSequenceNumber::new(Position::TrimHorizon));
        l.owner = owner.map(str::to_owned);
        l
    }

    fn view(key: &str, owner: Option<&str>) -> LeaseView {
        LeaseView { lease: lease(key, owner), expired: false, handoff_expired: false, last_change: None }
    }

    fn workers(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    const ALL: PlanSettings = PlanSettings { max_leases_for_worker: usize::MAX, graceful_handoff: true };

    fn counts_after(views: &[LeaseView], actions: &[Action]) -> BTreeMap<String, usize> {
        let mut owner: HashMap<String, Option<String>> =
            views.iter().map(|v| (v.lease.key.clone(), v.lease.owner.clone())).collect();
        for a in actions {
            let (Action::Assign { lease, to } | Action::Handoff { lease, to }) = a;
            owner.insert(lease.key.clone(), Some(to.clone()));
        }
        let mut counts = BTreeMap::new();
        for o in owner.into_values().flatten() {
            *counts.entry(o).or_default() += 1;
        }
        counts
    }

    #[test]
    fn targets_follow_the_2x_formula() {
        assert_eq!(target(8, 3, usize::MAX), 3);
        assert_eq!(target(2, 3, usize::MAX), 1);
        assert_eq!(target(8, 2, 3), 3);
        assert_eq!(target(8, 0, 3), 0);
    }

    #[test]
    fn a_new_application_is_spread_over_the_active_workers() {
        let views: Vec<LeaseView> = (0..8).map(|i| view(&format!("s{i}"), None)).collect();
        let actions = plan_lease_count(&views, &workers(&["a", "b", "c"]), ALL);
        assert_eq!(actions.len(), 8);
        assert!(actions.iter().all(|a| matches!(a, Action::Assign { .. })));
        let counts: Vec<usize> = counts_after(&views, &actions).into_values().collect();
        assert_eq!(counts, [3, 3, 2]);
    }

    #[test]
    fn a_joining_worker_gets_its_share_by_hand_off() {
        let mut views: Vec<LeaseView> = (0..4).map(|i| view(&format!("a{i}"), Some("a"))).collect();
        views.extend((0..4).map(|i| view(&format!("b{i}"), Some("b"))));
        let actions = plan_lease_count(&views, &workers(&["a", "b", "c"]), ALL);
        assert!(actions.iter().all(|a| matches!(a, Action::Handoff { to, .. } if to == "c")), "{actions:?}");
        let counts: Vec<usize> = counts_after(&views, &actions).into_values().collect();
        assert_eq!(counts, [3, 3, 2]);
        let without =
            plan_lease_count(&views, &workers(&["a", "b", "c"]), PlanSettings { graceful_handoff: false, ..ALL });
        assert!(without.iter().all(|a| matches!(a, Action::Assign { .. })));
    }

    #[test]
    fn a_balanced_fleet_is_left_alone() {
        let mut views: Vec<LeaseView> = (0..3).map(|i| view(&format!("a{i}"), Some("a"))).collect();
        views.extend((0..2).map(|i| view(&format!("b{i}"), Some("b"))));
        assert!(plan_lease_count(&views, &workers(&["a", "b"]), ALL).is_empty());
    }

    #[test]
    fn expired_leases_of_a_dead_worker_go_to_the_survivors_oldest_first() {
        let mut views: Vec<LeaseView> = (0..4).map(|i| view(&format!("a{i}"), Some("a"))).collect();
        let t0 = Instant::now();
        for (i, v) in views.iter_mut().enumerate() {
            v.expired = true;
            v.last_change = Some(t0 + Duration::from_secs(10 - i as u64));
        }
        views.push(view("b0", Some("b")));
        let actions = plan_lease_count(&views, &workers(&["b"]), ALL);
        let keys: Vec<&str> = actions
            .iter()
            .map(|a| match a {
                Action::Assign { lease, to } if to == "b" => lease.key.as_str(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(keys, ["a3", "a2", "a1", "a0"]);
    }

    #[test]
    fn hand_offs_in_progress_count_for_the_new_owner_and_never_move_again() {
        let mut moving = view("a0", Some("c"));
        moving.lease.checkpoint_owner = Some("a".into());
        let mut views = vec![moving];
        views.extend((1..3).map(|i| view(&format!("a{i}"), Some("a"))));
        views.extend((0..2).map(|i| view(&format!("b{i}"), Some("b"))));
        // a: 2, b: 2, c: 1 (the pending one) → balanced; a0 is not moved back either.
        assert!(plan_lease_count(&views, &workers(&["a", "b", "c"]), ALL).is_empty());
        // The pending hand-off expires (the old owner is stuck): it is assigned again.
        views[0].handoff_expired = true;
        let actions = plan_lease_count(&views, &workers(&["a", "b", "c"]), ALL);
        assert_eq!(actions.len(), 1);
        assert!(matches!(&actions[0], Action::Assign { lease, to } if lease.key == "a0" && to == "c"), "{actions:?}");
    }

    #[test]
    fn finished_leases_are_ignored_and_max_leases_is_respected() {
        let mut done = view("s0", None);
        done.lease.checkpoint = ExtendedSequenceNumber::new(Position::ShardEnd);
        let mut views = vec![done];
        views.extend((1..6).map(|i| view(&format!("s{i}"), None)));
        let actions = plan_lease_count(
            &views,
            &workers(&["a"]),
            PlanSettings { max_leases_for_worker: 3, graceful_handoff: true },
        );
        assert_eq!(actions.len(), 3);
        assert!(actions.iter().all(|a| !matches!(a, Action::Assign { lease, .. } if lease.key == "s0")));
    }

    #[test]
    fn no_active_worker_means_no_assignment() {
        assert!(plan_lease_count(&[view("s0", None)], &[], ALL).is_empty());
    }

    #[test]
    fn tracker_expires_unchanged_leases_and_stuck_hand_offs() {
        let t0 = Instant::now();
        let mut tracker = ExpiryTracker::new();
        let mut owned = lease("s0", Some("a"));
        let views = tracker.observe(vec![owned.clone(), lease("s1", None)], t0, F, H);
        assert!(!views[0].expired, "a new leader treats owned leases as just renewed");
        assert_eq!(views[1].last_change, None);
        let views = tracker.observe(vec![owned.clone()], t0 + F + Duration::from_millis(1), F, H);
        assert!(views[0].expired);
        owned.counter += 1;
        let views = tracker.observe(vec![owned.clone()], t0 + F * 2, F, H);
        assert!(!views[0].expired, "a counter change renews");
        // A hand-off whose old owner keeps renewing but never completes.
        owned.checkpoint_owner = Some("a".into());
        owned.owner = Some("b".into());
        let start = t0 + F * 2;
        for step in 0..8 {
            owned.counter += 1;
            let now = start + Duration::from_secs(5 * step);
            let views = tracker.observe(vec![owned.clone()], now, F, H);
            assert!(!views[0].expired);
            assert_eq!(views[0].handoff_expired, now.duration_since(start) > H + F, "at {step}");
        }
        let views = tracker.observe(vec![owned.clone()], start + H + F + Duration::from_secs(1), F, H);
        assert!(views[0].handoff_expired);
    }
}
