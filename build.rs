//! Build script: records the git commit for `multilangd --version`.
//!
//! `MULTILANGD_COMMIT` from the environment wins (packaging from a source tarball); else
//! `git rev-parse --short=12 HEAD` when building inside a git checkout; else `unknown`.
//! Re-runs when HEAD moves (its reflog changes on every commit and checkout).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=MULTILANGD_COMMIT");
    let commit = std::env::var("MULTILANGD_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    if let Some(reflog) = git(&["rev-parse", "--path-format=absolute", "--git-path", "logs/HEAD"]) {
        println!("cargo:rerun-if-changed={reflog}");
    }
    if let Some(head) = git(&["rev-parse", "--path-format=absolute", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={head}");
    }
    println!("cargo:rustc-env=MULTILANGD_COMMIT={commit}");
}
