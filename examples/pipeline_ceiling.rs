//! Synthetic ceiling of the shard pipeline: `processRecords` batches built in memory are
//! encoded by the real protocol codec, written through a real pipe to a minimal child that
//! answers `status`, and the exchange is driven by the real `ProtocolSession`. Reports the
//! daemon side's records/s and MB/s per core of CPU (this process's user+system time; the
//! child's CPU is reported separately), so the figure shows what the daemon itself can do.
//!
//! Usage: `pipeline_ceiling [--records N] [--record-size BYTES] [--batch RECORDS]`
//! (internally re-executes itself with `--child` as the minimal record processor).
//! Prints one JSON line.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use bytes::Bytes;
use multilangd::config::Executable;
use multilangd::protocol::messages::Action;
use multilangd::sequence::SequenceNumber;
use multilangd::shard::process::ChildLauncher;
use multilangd::shard::processor::ProcessorLauncher;
use multilangd::stream::Record;
use nix::sys::resource::{getrusage, UsageWho};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The minimal record processor: answers every action with its status.
fn child() {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut line = Vec::with_capacity(4 << 20);
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        // Daemon lines start with {"action":"<name>"
        let rest = line.get(11..).unwrap_or_default();
        let end = rest.iter().position(|b| *b == b'"').unwrap_or(0);
        let action = String::from_utf8_lossy(&rest[..end]);
        if action == "checkpoint" {
            continue;
        }
        if writeln!(out, "{{\"action\":\"status\",\"responseFor\":\"{action}\"}}").and_then(|()| out.flush()).is_err() {
            return;
        }
    }
}

fn cpu(who: UsageWho) -> Duration {
    getrusage(who).map_or(Duration::ZERO, |u| {
        let t = |tv: nix::sys::time::TimeVal| {
            Duration::from_secs(u64::try_from(tv.tv_sec()).unwrap_or(0))
                + Duration::from_micros(u64::try_from(tv.tv_usec()).unwrap_or(0))
        };
        t(u.user_time()) + t(u.system_time())
    })
}

fn main() {
    if std::env::args().any(|a| a == "--child") {
        child();
        return;
    }
    let records = arg("--records", 1_000_000);
    let size = arg("--record-size", 100);
    let batch = arg("--batch", 10_000).clamp(1, 10_000);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let exe = std::env::current_exe().expect("own path").display().to_string();
        let executable =
            Executable { program: exe.clone(), args: vec!["--child".into()], raw: format!("{exe} --child") };
        let launcher = ChildLauncher::new(executable, None, Duration::from_secs(5));
        let mut processor = launcher.launch("shardId-000000000000").await.expect("start the child");
        processor.perform(Action::Initialize { checkpoint: None }, None).await.expect("initialize");
        let payload = Bytes::from(vec![b'x'; size]);
        let base = "49590338271490256608559692538361571095921575989136588898";
        let template: Vec<Record> = (0..batch)
            .map(|i| Record {
                data: payload.clone(),
                partition_key: format!("pk-{i}"),
                sequence_number: SequenceNumber::parse(&format!("{}{i:06}", &base[..50])).expect("digits"),
                sub_sequence_number: 0,
                approximate_arrival_timestamp_ms: 1_700_000_000_000,
            })
            .collect();
        let cpu_before = cpu(UsageWho::RUSAGE_SELF);
        let started = Instant::now();
        let mut sent = 0;
        while sent < records {
            let n = batch.min(records - sent);
            let action = Action::ProcessRecords { records: &template[..n], millis_behind_latest: Some(0) };
            processor.perform(action, None).await.expect("processRecords");
            sent += n;
        }
        let wall = started.elapsed();
        let daemon_cpu = cpu(UsageWho::RUSAGE_SELF).saturating_sub(cpu_before);
        processor.perform(Action::LeaseLost, None).await.expect("leaseLost");
        processor.shutdown().await;
        let child_cpu = cpu(UsageWho::RUSAGE_CHILDREN);
        #[allow(clippy::cast_precision_loss)]
        let (n, bytes) = (sent as f64, (sent * size) as f64);
        let per_core = |x: f64| x / daemon_cpu.as_secs_f64().max(1e-9);
        println!(
            "{{\"records\":{sent},\"record_bytes\":{size},\"batch\":{batch},\"wall_s\":{:.3},\"cpu_s\":{:.3},\
             \"child_cpu_s\":{:.3},\"records_per_sec\":{:.0},\"records_per_sec_per_core\":{:.0},\
             \"mb_per_sec_per_core\":{:.1}}}",
            wall.as_secs_f64(),
            daemon_cpu.as_secs_f64(),
            child_cpu.as_secs_f64(),
            n / wall.as_secs_f64(),
            per_core(n),
            per_core(bytes) / 1e6,
        );
    });
}
