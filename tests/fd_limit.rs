//! The daemon raises its soft open-file limit to the hard limit (as the JVM does for the
//! Java daemon): hundreds of shards need about 5.5 descriptors each.

use std::process::Command;

#[test]
fn the_daemon_raises_a_low_soft_open_file_limit() {
    let bin = env!("CARGO_BIN_EXE_multilangd");
    let hard = Command::new("sh").args(["-c", "ulimit -Hn"]).output().expect("sh");
    let hard = String::from_utf8_lossy(&hard.stdout).trim().to_owned();
    if hard != "unlimited" && hard.parse::<u64>().is_ok_and(|h| h <= 256) {
        eprintln!("hard limit {hard}: nothing to raise");
        return;
    }
    let script = format!("ulimit -Sn 256 && exec '{bin}' --properties-file /nonexistent/app.properties");
    let out = Command::new("sh").args(["-c", &script]).output().expect("run the daemon");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("raised the open-file limit") && stderr.contains("from=256"), "{stderr}");
    // The configuration error is still reported as before.
    assert_eq!(out.status.code(), Some(78), "{stderr}");
}
