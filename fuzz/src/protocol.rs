//! `crate::protocol` (messages and codec; not the session).

#[path = "../../src/protocol/messages.rs"]
pub mod messages;

#[path = "../../src/protocol/codec.rs"]
pub mod codec;

pub use messages::{CheckpointRequest, ChildMessage};
