//! The production record processor: a child process spoken to with the multi-language
//! protocol. Joins [`crate::child`] (spawn, stderr, exit, stop) and
//! [`crate::protocol::session`] (the exchange).

use std::time::Duration;

use async_trait::async_trait;
use tracing::{debug, info, warn};

use super::processor::{ProcessorConnection, ProcessorFailure, ProcessorLauncher};
use crate::child::ChildProcess;
use crate::config::Executable;
use crate::protocol::messages::Action;
use crate::protocol::session::ProtocolSession;
use crate::protocol::Checkpointer;
use crate::protocol::{ProtocolError, ProtocolErrorKind};

/// How long a status that was already written may still arrive after the child exited.
const STATUS_AFTER_EXIT: Duration = Duration::from_secs(2);

/// Starts `executableName` once per shard.
#[derive(Debug, Clone)]
pub struct ChildLauncher {
    executable: Executable,
    timeout: Option<Duration>,
    stop_grace: Duration,
}

impl ChildLauncher {
    /// A launcher for `executable`; `timeout` is `timeoutInSeconds`; `stop_grace` is how
    /// long a child may take to exit after its stdin is closed (and again after SIGTERM).
    #[must_use]
    pub fn new(executable: Executable, timeout: Option<Duration>, stop_grace: Duration) -> Self {
        Self { executable, timeout, stop_grace }
    }
}

#[async_trait]
impl ProcessorLauncher for ChildLauncher {
    async fn launch(&self, shard_id: &str) -> Result<Box<dyn ProcessorConnection>, ProcessorFailure> {
        let (child, pipes) = ChildProcess::spawn_async(&self.executable, shard_id).await?;
        info!(pid = child.pid(), program = %child.program().display(), "record processor started");
        let session = ProtocolSession::new(shard_id, pipes.stdin, pipes.stdout, self.timeout);
        Ok(Box::new(ChildConnection { child, session: Some(session), stop_grace: self.stop_grace }))
    }
}

struct ChildConnection {
    child: ChildProcess,
    session: Option<ProtocolSession>,
    stop_grace: Duration,
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
        let exchange = session.perform(action, checkpointer);
        tokio::pin!(exchange);
        let result = tokio::select! {
            biased;
            result = &mut exchange => result,
            exit = self.child.wait() => {
                // The child may have written its status just before exiting; its stdout
                // reaches EOF right after, unless a grandchild keeps it open.
                match tokio::time::timeout(STATUS_AFTER_EXIT, &mut exchange).await {
                    Ok(result) => result,
                    Err(_) => return Err(ProcessorFailure::Exited { exit, during: Some(kind), protocol: None }),
                }
            }
        };
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
