//! The pure modules of multilangd, compiled from the main crate's own source files.
//!
//! Each `#[path]` (here and in the module files next to this one) points into `../src`: the
//! fuzz targets exercise exactly the code the daemon runs, without building the rest of the
//! crate (AWS SDKs, aws-lc, the tokio runtime, ...). The module tree mirrors the main crate's
//! where these files refer to each other (`crate::model`, `crate::sequence`,
//! `super::Record`, `super::CheckpointRequest`), so a file that starts importing something
//! else breaks this build, visibly, in the fuzz smoke step of `scripts/test-all.sh`.
#![allow(dead_code, unused_imports)]

pub mod config;
pub mod lease;
pub mod protocol;
pub mod stream;

#[path = "../../src/sequence.rs"]
pub mod sequence;

#[path = "../../src/model.rs"]
pub mod model;
