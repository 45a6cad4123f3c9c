//! The benchmark harness (`bench/run.py`) in its tiny smoke mode, so that it cannot rot.
mod support;

use std::path::Path;
use std::process::Command;

fn run_harness(args: &[&str], results: &Path) -> std::process::Output {
    Command::new(support::python())
        .arg(support::repo_dir().join("bench/run.py"))
        .args(args)
        .arg("--results")
        .arg(results)
        .arg("--workdir")
        .arg(results.join("work"))
        .args(["--report", "none"])
        .env("MULTILANGD_TESTBED", support::testbed_dir())
        .output()
        .expect("run bench/run.py")
}

/// The multilangd status recorded for `scenario`, or why it cannot be read.
fn status_of(results: &Path, scenario: &str) -> String {
    let path = results.join(format!("{scenario}.json"));
    let json = match std::fs::read_to_string(&path).map(|t| serde_json::from_str::<serde_json::Value>(&t)) {
        Ok(Ok(json)) => json,
        other => return format!("unreadable {}: {other:?}", path.display()),
    };
    json["daemons"]["multilangd"]["status"].as_str().unwrap_or("missing").to_owned()
}

#[test]
fn missing_binary_is_reported_not_available() {
    let results = tempfile::tempdir().unwrap();
    let out = run_harness(
        &["all", "--daemon", "multilangd", "--sizes", "tiny", "--multilangd-bin", "/nonexistent/multilangd"],
        results.path(),
    );
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    for scenario in ["start-hot", "start-cold", "steady", "latency", "throughput", "fanout"] {
        assert_eq!(status_of(results.path(), scenario), "not available", "{scenario}");
    }
}

/// Every scenario of the harness runs against the (debug) multilangd binary at tiny sizes.
#[test]
fn tiny_benchmarks_run_against_multilangd() {
    let results = tempfile::tempdir().unwrap();
    let bin = support::multilangd_bin();
    // `fanout` also runs multilangd in FANOUT with the 3.x lease protocol on moto.
    let scenarios = ["start-hot", "start-cold", "steady", "latency", "throughput", "fanout"];
    let mut args = scenarios.to_vec();
    args.extend(["--daemon", "multilangd", "--sizes", "tiny", "--multilangd-bin", bin.to_str().unwrap()]);
    let out = run_harness(&args, results.path());
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{log}");
    for scenario in scenarios {
        assert_eq!(status_of(results.path(), scenario), "ok", "{scenario}\n{log}");
    }
}
