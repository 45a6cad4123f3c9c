//! The production record processor: a child process spoken to with the multi-language
//! protocol. Joins [`crate::child`] (spawn, stderr, exit, stop) and
//! [`crate::protocol::session`] (the exchange).
//!
//! # Start-up spread
//! Starting a record processor costs CPU (a Python interpreter and its imports take a
//! sizeable fraction of a core-second). When a worker takes hundreds of leases at once,
//! starting every child together would saturate the host, and the daemon's own lease
//! renewals would wait behind them for CPU. A [`ChildLauncher`] therefore lets only
//! `multilangd.childStartupConcurrency` children (default
//! [`DEFAULT_STARTUP_CONCURRENCY`]) be starting at once: a start-up permit is taken before
//! the spawn and held until the child acknowledges `initialize` (or fails, or
//! [`STARTUP_PERMIT_MAX_HOLD`] passes, so a child that never answers cannot block the
//! others). Renewals run on their own task and never wait for a permit.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

use super::processor::{ProcessorConnection, ProcessorFailure, ProcessorLauncher};
use crate::child::ChildProcess;
use crate::config::Executable;
use crate::protocol::messages::{Action, ActionKind};
use crate::protocol::session::ProtocolSession;
use crate::protocol::Checkpointer;
use crate::protocol::{ProtocolError, ProtocolErrorKind};

/// How long a status that was already written may still arrive after the child exited.
const STATUS_AFTER_EXIT: Duration = Duration::from_secs(2);

/// Default of `multilangd.childStartupConcurrency`: children starting at once. Measured
/// with 192 Python children on a shared 2-core host, 8 stretched the start of all shards
/// from ~50 s to ~230 s (each child then gets a smaller share of a busy machine); 32 keeps
/// the start about as fast as unbounded while still bounding the burst.
pub const DEFAULT_STARTUP_CONCURRENCY: usize = 32;

/// The longest a starting child holds its start-up permit while `initialize` is unanswered.
pub const STARTUP_PERMIT_MAX_HOLD: Duration = Duration::from_secs(30);

/// Starts `executableName` once per shard, at most a few at a time (see the module docs).
#[derive(Debug, Clone)]
pub struct ChildLauncher {
    executable: Executable,
    timeout: Option<Duration>,
    stop_grace: Duration,
    startups: Arc<Semaphore>,
    max_hold: Duration,
}

impl ChildLauncher {
    /// A launcher for `executable`; `timeout` is `timeoutInSeconds`; `stop_grace` is how
    /// long a child may take to exit after its stdin is closed (and again after SIGTERM).
    /// At most [`DEFAULT_STARTUP_CONCURRENCY`] children start at once.
    #[must_use]
    pub fn new(executable: Executable, timeout: Option<Duration>, stop_grace: Duration) -> Self {
        Self {
            executable,
            timeout,
            stop_grace,
            startups: Arc::new(Semaphore::new(DEFAULT_STARTUP_CONCURRENCY)),
            max_hold: STARTUP_PERMIT_MAX_HOLD,
        }
    }

    /// Lets at most `concurrency` (at least 1) children be starting at once
    /// (`multilangd.childStartupConcurrency`).
    #[must_use]
    pub fn with_startup_concurrency(mut self, concurrency: usize) -> Self {
        self.startups = Arc::new(Semaphore::new(concurrency.max(1)));
        self
    }

    /// Changes how long a child that has not answered `initialize` keeps its permit
    /// (default [`STARTUP_PERMIT_MAX_HOLD`]).
    #[must_use]
    pub fn with_startup_permit_max_hold(mut self, max_hold: Duration) -> Self {
        self.max_hold = max_hold;
        self
    }
}

#[async_trait]
impl ProcessorLauncher for ChildLauncher {
    async fn launch(&self, shard_id: &str) -> Result<Box<dyn ProcessorConnection>, ProcessorFailure> {
        // The semaphore is never closed; without a permit (impossible) the child just starts.
        let permit = Arc::clone(&self.startups).acquire_owned().await.ok();
        let (child, pipes) = ChildProcess::spawn_async(&self.executable, shard_id).await?;
        info!(pid = child.pid(), program = %child.program().display(), "record processor started");
        let session = ProtocolSession::new(shard_id, pipes.stdin, pipes.stdout, self.timeout);
        Ok(Box::new(ChildConnection {
            child,
            session: Some(session),
            stop_grace: self.stop_grace,
            startup: permit,
            max_hold: self.max_hold,
        }))
    }
}

struct ChildConnection {
    child: ChildProcess,
    session: Option<ProtocolSession>,
    stop_grace: Duration,
    /// The start-up permit, held until `initialize` is answered (see the module docs).
    startup: Option<OwnedSemaphorePermit>,
    max_hold: Duration,
}

#[async_trait]
impl ProcessorConnection for ChildConnection {
    async fn perform(
        &mut self,
        action: Action<'_>,
        checkpointer: Option<&mut (dyn Checkpointer + '_)>,
    ) -> Result<(), ProcessorFailure> {
        let kind = action.kind();
        let Some(session) = self.session.as_mut() else {
            return Err(ProcessorFailure::from(ProtocolError {
                shard_id: self.child.shard_id().to_owned(),
                action: kind,
                kind: ProtocolErrorKind::Closed,
                last_sent: None,
                last_received: None,
            }));
        };
        // The start-up permit ends with the first action's answer (`initialize`).
        let mut startup = if kind == ActionKind::Initialize { self.startup.take() } else { None };
        let hold = tokio::time::sleep(self.max_hold);
        tokio::pin!(hold);
        let exchange = session.perform(action, checkpointer);
        tokio::pin!(exchange);
        let result = loop {
            tokio::select! {
                biased;
                result = &mut exchange => break result,
                exit = self.child.wait() => {
                    // The child may have written its status just before exiting; its stdout
                    // reaches EOF right after, unless a grandchild keeps it open.
                    match tokio::time::timeout(STATUS_AFTER_EXIT, &mut exchange).await {
                        Ok(result) => break result,
                        Err(_) => return Err(ProcessorFailure::Exited { exit, during: Some(kind), protocol: None }),
                    }
                }
                () = &mut hold, if startup.is_some() => {
                    warn!(after = ?self.max_hold, "record processor has not acknowledged initialize; letting the next child start");
                    startup = None;
                }
            }
        };
        drop(startup);
        result.map_err(|e| match self.child.exit() {
            Some(exit) => ProcessorFailure::Exited { exit, during: Some(kind), protocol: Some(Box::new(e)) },
            None => ProcessorFailure::from(e),
        })
    }

    async fn exited(&mut self) -> ProcessorFailure {
        let exit = self.child.wait().await;
        ProcessorFailure::Exited { exit, during: None, protocol: None }
    }

    async fn shutdown(mut self: Box<Self>) {
        if let Some(session) = self.session.take() {
            match tokio::time::timeout(self.stop_grace, session.close()).await {
                Ok(0) => {}
                Ok(drained) => debug!(drained, "drained unanswered messages from the record processor"),
                Err(_) => warn!(grace = ?self.stop_grace, "record processor kept its stdout open after EOF on stdin"),
            }
        }
        let this = *self;
        let exit = this.child.stop(this.stop_grace).await;
        info!(%exit, "record processor stopped");
    }
}
