//! Shared helpers for integration tests: the local test bed (emulators, Python venv, Java
//! daemon) and small utilities. Each integration test file includes this with `mod support;`.
#![allow(dead_code)]

pub mod daemon;
pub mod emulators;
pub mod ledger;
pub mod proxy;
pub mod sample_apps;

use std::path::PathBuf;

/// The repository root (where Cargo.toml lives).
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The test bed installed by `scripts/install-testbed.sh`: `$MULTILANGD_TESTBED`, or
/// `<repo>/.testbed`.
pub fn testbed_dir() -> PathBuf {
    std::env::var_os("MULTILANGD_TESTBED").map_or_else(|| repo_dir().join(".testbed"), PathBuf::from)
}

/// The test bed's Python interpreter (venv with boto3 and amazon_kclpy).
pub fn python() -> PathBuf {
    testbed_dir().join("venv/bin/python")
}

/// The built `multilangd` binary under test.
pub fn multilangd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_multilangd"))
}

/// A current-thread runtime for the SDK calls of blocking tests.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}
