//! The standard `process_*` metrics, read from `/proc/self` at scrape time (Linux).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::prometheus::single;

/// What `/proc/self` tells.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProcessStats {
    /// User + system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Resident set size, bytes.
    pub resident_bytes: u64,
    /// Virtual memory size, bytes.
    pub virtual_bytes: u64,
    /// Threads.
    pub threads: u64,
    /// Start time, seconds since the epoch.
    pub start_time_seconds: f64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit on file descriptors.
    pub max_fds: u64,
}

/// Reads the stats of this process; `None` where `/proc` is unavailable.
#[must_use]
pub fn read() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let mut stats = parse_stat(&stat, ticks_per_second(), page_size(), boot_time()?)?;
    stats.open_fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0);
    stats.max_fds =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map(|(soft, _)| soft).unwrap_or(0);
    Some(stats)
}

/// Parses `/proc/self/stat` (fields after the `(comm)`, which may contain spaces).
fn parse_stat(stat: &str, ticks: f64, page: u64, boot_time: f64) -> Option<ProcessStats> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field numbers of proc(5) minus 3 (pid, comm and state come first; state is fields[0]).
    let num = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let utime = num(11)?;
    let stime = num(12)?;
    let threads = num(17)?;
    let start_ticks = num(19)?;
    let vsize = num(20)?;
    let rss_pages = num(21)?;
    Some(ProcessStats {
        cpu_seconds: (utime + stime) as f64 / ticks,
        resident_bytes: rss_pages * page,
        virtual_bytes: vsize,
        threads,
        start_time_seconds: boot_time + start_ticks as f64 / ticks,
        open_fds: 0,
        max_fds: 0,
    })
}

/// `USER_HZ`: the unit of the times in `/proc` is fixed at 100 per second for user space.
fn ticks_per_second() -> f64 {
    100.0
}

/// The page size, from the kernel's own figures: `VmRSS` (kB) / `statm` resident pages.
fn page_size() -> u64 {
    let rss_kb = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    });
    let rss_pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()));
    match (rss_kb, rss_pages) {
        (Some(kb), Some(pages)) if pages > 0 => {
            // Round to a power of two (the two files are read at slightly different times).
            let estimate = kb * 1024 / pages;
            [4096_u64, 16384, 65536].into_iter().min_by_key(|p| p.abs_diff(estimate)).unwrap_or(4096)
        }
        _ => 4096,
    }
}

fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse::<f64>().ok())
}

/// The scrape-time collector.
#[derive(Debug)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(s) = read() else { return Ok(()) };
        single(
            &mut e,
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            ConstCounter::new(s.cpu_seconds),
        )?;
        single(
            &mut e,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            ConstGauge::new(s.resident_bytes as i64),
        )?;
        single(
            &mut e,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            ConstGauge::new(s.virtual_bytes as i64),
        )?;
        single(&mut e, "process_threads", "Number of OS threads", ConstGauge::new(s.threads as i64))?;
        single(&mut e, "process_open_fds", "Number of open file descriptors", ConstGauge::new(s.open_fds as i64))?;
        single(
            &mut e,
            "process_max_fds",
            "Maximum number of open file descriptors",
            ConstGauge::new(s.max_fds as i64),
        )?;
        single(
            &mut e,
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds",
            ConstGauge::new(s.start_time_seconds),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_spaces_in_the_name() {
        let line = "4242 (multi langd) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 7 0 12345 104857600 2560 \
                    18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(line, 100.0, 4096, 1_000_000.0).expect("parses");
        assert!((s.cpu_seconds - 3.0).abs() < 1e-9, "{s:?}");
        assert_eq!(s.threads, 7);
        assert_eq!(s.virtual_bytes, 104_857_600);
        assert_eq!(s.resident_bytes, 2560 * 4096);
        assert!((s.start_time_seconds - 1_000_123.45).abs() < 1e-6, "{s:?}");
    }

    #[test]
    fn reads_this_process() {
        let s = read().expect("/proc is mounted in the test environment");
        assert!(s.resident_bytes > 0 && s.threads >= 1 && s.open_fds >= 3, "{s:?}");
    }
}
