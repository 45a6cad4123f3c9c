//! `crate::stream` (KPL deaggregation only).

pub use crate::model::{HashKeyRange, Record};

#[path = "../../src/stream/kpl.rs"]
pub mod kpl;
