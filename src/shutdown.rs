//! The daemon's stop request: graceful first, immediate on a second signal.
//!
//! `main` turns the first SIGTERM/SIGINT into [`Shutdown::request`] (record processors get
//! `shutdownRequested`, checkpoint and stop within `shutdownGraceMillis`; leases are released)
//! and a second one into [`Shutdown::force`]: every record processor is killed with its
//! process group at once and the held leases get one bounded release attempt, then the
//! daemon returns. Both are cancellation tokens, so every task can race them.

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// A two-stage stop request. Cheap to clone; clones share the state.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    graceful: CancellationToken,
    immediate: CancellationToken,
}

impl Shutdown {
    /// Nothing requested yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests a graceful stop.
    pub fn request(&self) {
        self.graceful.cancel();
    }

    /// Requests an immediate stop (implies the graceful request).
    pub fn force(&self) {
        self.immediate.cancel();
        self.graceful.cancel();
    }

    /// Resolves once a stop (graceful or immediate) was requested.
    pub fn requested(&self) -> WaitForCancellationFuture<'_> {
        self.graceful.cancelled()
    }

    /// Resolves once an immediate stop was requested.
    pub fn forced(&self) -> WaitForCancellationFuture<'_> {
        self.immediate.cancelled()
    }

    /// Whether a stop was requested.
    #[must_use]
    pub fn is_requested(&self) -> bool {
        self.graceful.is_cancelled()
    }

    /// Whether an immediate stop was requested.
    #[must_use]
    pub fn is_forced(&self) -> bool {
        self.immediate.is_cancelled()
    }

    /// The graceful token (cancelled by both requests), to parent other tokens on.
    #[must_use]
    pub fn token(&self) -> &CancellationToken {
        &self.graceful
    }
}

impl From<CancellationToken> for Shutdown {
    /// A stop request driven by `graceful` (never forced unless [`Shutdown::force`] is called).
    fn from(graceful: CancellationToken) -> Self {
        Self { graceful, immediate: CancellationToken::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn force_implies_request() {
        let s = Shutdown::new();
        assert!(!s.is_requested() && !s.is_forced());
        let clone = s.clone();
        clone.force();
        assert!(s.is_requested() && s.is_forced());
    }

    #[test]
    fn a_token_drives_the_graceful_stage_only() {
        let token = CancellationToken::new();
        let s = Shutdown::from(token.clone());
        token.cancel();
        assert!(s.is_requested());
        assert!(!s.is_forced());
    }
}
