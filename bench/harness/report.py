"""Generates BENCHMARKS.md from the per-scenario result files (bench/results/*.json)."""
import json
from pathlib import Path

# (label, scenario, figure key, better, target (op, value) or None, format)
ROWS = [
    ("Launch → first record, existing lease table (hot), s", "start-hot", "first_record_s", "lower", ("<=", 0.3), "{:.2f}"),
    ("Launch → first record, new application (cold), s", "start-cold", "first_record_s", "lower", ("<=", 1.0), "{:.2f}"),
    ("Peak RSS of the daemon alone, 2 shards at light load, MiB", "steady", "rss_light_mib", "lower", ("<=", 10), "{:.1f}"),
    ("Peak RSS of the daemon alone, 4 shards consuming {records} × 100 B, MiB", "throughput", "rss_loaded_mib", "lower", ("<=", 32), "{:.1f}"),
    ("Daemon CPU-seconds per 100k records (consuming)", "throughput", "cpu_s_per_100k", "lower", ("<=", 0.10), "{:.3f}"),
    ("Idle daemon CPU, 2 shards polling every 200 ms, % of one core", "steady", "idle_cpu_pct", "lower", ("<=", 1.0), "{:.2f}"),
    ("Throughput on 4 shards (kinesalite), records/s", "throughput", "records_per_s", "higher", None, "{:,.0f}"),
    ("Throughput bottleneck (from per-process CPU)", "throughput", "bottleneck", None, None, "{}"),
    ("put → child latency p50, polling (kinesis-local), ms", "latency", "p50_ms", "lower", None, "{:.0f}"),
    ("put → child latency p99, polling (kinesis-local), ms", "latency", "p99_ms", "lower", None, "{:.0f}"),
    ("put → child latency p50, fan-out (kinesis-local), ms", "latency-fanout", "p50_ms", "lower", None, "{:.0f}"),
    ("put → child latency p99, fan-out (kinesis-local), ms", "latency-fanout", "p99_ms", "lower", None, "{:.0f}"),
    ("DynamoDB requests per lease per minute, steady state", "steady", "ddb_req_per_lease_min", "lower", None, "{:.1f}"),
    ("Many shards: launch → a record delivered on all 16 shards, s", "many-shards", "all_shards_s_16", "lower", None, "{:.1f}"),
    ("Many shards: launch → a record delivered on all 64 shards, s", "many-shards", "all_shards_s_64", "lower", None, "{:.1f}"),
    ("Many shards: peak daemon RSS, 64 shards, MiB", "many-shards", "rss_peak_mib_64", "lower", None, "{:.1f}"),
    ("Many shards: launch → a record delivered on all 128 shards, s", "many-shards", "all_shards_s_128", "lower", None, "{:.1f}"),
    ("Many shards: peak daemon RSS, 128 shards, MiB", "many-shards", "rss_peak_mib_128", "lower", None, "{:.1f}"),
    ("Many shards: launch → a record delivered on all 192 shards, s", "many-shards", "all_shards_s_192", "lower", None, "{:.1f}"),
    ("Many shards: peak daemon RSS, 192 shards, MiB", "many-shards", "rss_peak_mib_192", "lower", ("<=", 32), "{:.1f}"),
    ("Many shards: idle daemon CPU, 192 shards polling every 200 ms, % of one core", "many-shards", "idle_cpu_pct_192", "lower", ("<=", 2.0), "{:.2f}"),
    ("Many shards: idle daemon CPU, 192 shards at the default idleTimeBetweenReadsInMillis (1500 ms), % of one core", "many-shards", "idle_cpu_pct_192_idle1500", "lower", ("<=", 2.0), "{:.2f}"),
    ("Many shards: peak daemon RSS, 192 shards at 1500 ms, MiB", "many-shards", "rss_peak_mib_192_idle1500", "lower", ("<=", 32), "{:.1f}"),
    ("Fan-out vs **Java 3.1.3**: launch → first record, new application (cold), s", "fanout", "first_record_cold_s", "lower", None, "{:.2f}"),
    ("Fan-out vs **Java 3.1.3**: launch → first record, restart of the same worker (hot), s", "fanout", "first_record_hot_s", "lower", None, "{:.2f}"),
    ("Fan-out vs **Java 3.1.3**: daemon CPU-seconds per 100k records ({records} put while running, at the emulator's put rate)", "fanout", "cpu_s_per_100k", "lower", None, "{:.3f}"),
    ("Fan-out vs **Java 3.1.3**: peak RSS of the daemon alone, 4 shards, MiB", "fanout", "rss_peak_mib", "lower", None, "{:.1f}"),
    ("Fan-out vs **Java 3.1.3**: idle daemon CPU, 4 subscriptions, % of one core", "fanout", "idle_cpu_pct", "lower", None, "{:.2f}"),
    ("Fan-out vs **Java 3.1.3**: put → child latency p50 (kinesis-local: 1 event/s), ms", "fanout", "p50_ms", "lower", None, "{:.0f}"),
    ("Fan-out vs **Java 3.1.3**: put → child latency p99 (kinesis-local: 1 event/s), ms", "fanout", "p99_ms", "lower", None, "{:.0f}"),
    ("multilangd fan-out vs multilangd **polling**: CPU-seconds per 100k records (the same 20,000 records)", "fanout", "cpu_s_per_100k", "lower", None, "{:.3f}", "multilangd-polling"),
    ("multilangd fan-out vs multilangd **polling**: peak RSS, 4 shards, MiB", "fanout", "rss_peak_mib", "lower", None, "{:.1f}", "multilangd-polling"),
    ("multilangd fan-out vs multilangd **polling**: idle CPU, % of one core", "fanout", "idle_cpu_pct", "lower", None, "{:.2f}", "multilangd-polling"),
    ("Synthetic ceiling: shard pipeline from memory, records/s per core", "ceiling", "records_per_sec_per_core", "higher", (">=", 1_000_000), "{:,.0f}"),
    ("Synthetic ceiling: shard pipeline from memory, MB/s per core", "ceiling", "mb_per_sec_per_core", "higher", None, "{:,.1f}"),
]

SCENARIO_TITLES = {
    "start-hot": "Start-up, existing lease table (hot)",
    "start-cold": "Start-up, new application (cold)",
    "steady": "Steady state: idle CPU, light-load RSS, DynamoDB requests",
    "latency": "put → child latency (polling)",
    "latency-fanout": "put → child latency (enhanced fan-out)",
    "throughput": "Throughput, CPU per record, loaded RSS",
    "ceiling": "Synthetic ceiling (shard pipeline fed from memory)",
    "many-shards": "Many shards on one worker (16-192, hot start)",
    "fanout": "Enhanced fan-out: multilangd vs Java 3.1.3 (kinesis-local + moto, 3.x lease protocol)",
}

# Scenarios whose reference daemon is not Java 2.5.8: the "Java 2.5.8" column of the summary
# then holds this daemon's figure (the row's label says so). A row's optional 7th element names
# its reference daemon instead.
JAVA_NAME = {"fanout": "java3"}

ORDER = ["start-hot", "start-cold", "steady", "latency", "latency-fanout", "throughput", "ceiling", "many-shards",
         "fanout"]


def load_results(results_dir):
    out = {}
    for name in ORDER:
        p = Path(results_dir) / f"{name}.json"
        if p.exists():
            try:
                out[name] = json.loads(p.read_text())
            except ValueError:
                continue
    return out


def _fmt(fmt, v):
    if v is None:
        return "—"
    try:
        return fmt.format(v)
    except (ValueError, TypeError):
        return str(v)


def _cell(entry, key, fmt):
    if entry is None:
        return "not run"
    if entry.get("status") == "not available":
        return "pending (not built)"
    if entry.get("status") != "ok":
        return entry.get("status", "?")
    v = (entry.get("figures") or {}).get(key)
    return _fmt(fmt, v)


def _num(entry, key):
    if not entry or entry.get("status") != "ok":
        return None
    v = (entry.get("figures") or {}).get(key)
    return v if isinstance(v, (int, float)) else None


def _ratio(j, m, better):
    if j is None or m is None or better is None:
        return "—"
    r = (j / m if m > 0 else None) if better == "lower" else (m / j if j > 0 else None)
    if r is None:
        return "∞"
    return f"{r:,.0f}×" if r >= 10 else f"{r:.2f}×"


def _met(m, target, mentry):
    if target is None:
        return "—"
    if m is None:
        return "failed" if mentry and mentry.get("status") == "failed" else "pending"
    op, v = target
    ok = m <= v if op == "<=" else m >= v
    return "**yes**" if ok else "no"


def _target_text(target, fmt):
    if target is None:
        return "—"
    op, v = target
    return f"{'≤' if op == '<=' else '≥'} {_fmt(fmt, v)}"


def _size_note(data):
    sizes = set()
    for e in data.get("daemons", {}).values():
        if e.get("run"):
            sizes.add(e["run"]["size"])
    return "/".join(sorted(sizes))


def build(results):
    lines = []
    add = lines.append
    add("# Benchmarks: multilangd vs the Java KCL MultiLangDaemon 2.5.8")
    add("")
    add("<!-- Generated by bench/harness/report.py from bench/results/*.json. Do not edit by hand: "
        "run bench/run-all.sh (or bench/run.py) instead. -->")
    add("")
    runs = [e["run"] for d in results.values() for e in d.get("daemons", {}).values() if e.get("run")]
    if not runs:
        add("No results yet. Run `bench/run-all.sh`.")
        return "\n".join(lines) + "\n"
    latest = max(runs, key=lambda r: r["date"])
    sizes = sorted({r["size"] for r in runs})
    commands = sorted({r["command"] for r in runs})
    m = latest["machine"]
    add("Both daemons are run **back to back on the same emulators** in one invocation, with the same "
        "properties file and the same benchmark record processor (`bench/processors/bench_processor.py`, "
        "amazon_kclpy v3 API). Each daemon is exec'd directly, so every daemon figure is for the daemon "
        "process alone; its children (the record processors) are measured separately.")
    add("")
    add("Reproduce:")
    add("")
    add("```bash")
    for c in commands:
        add(c)
    add("```")
    add("")
    add(f"- Date of the latest figures: {latest['date']}; size(s): {', '.join(sizes)}")
    add(f"- Machine: {m.get('cpu', '?')}, {m.get('nproc')} cores, {m.get('mem_gib')} GiB RAM, "
        f"Linux {m.get('kernel')}")
    loads = sorted({tuple(r["loadavg_before"]) for r in runs})
    add(f"- Load average (1/5/15 min) before the scenarios: "
        + "; ".join("/".join(str(x) for x in l) for l in loads[:8]) + (" …" if len(loads) > 8 else ""))
    busy = []
    for scen, key in (("steady", "machine_busy_cores_idle"), ("throughput", "machine_busy_cores")):
        for name, e in results.get(scen, {}).get("daemons", {}).items():
            v = (e.get("details") or {}).get(key)
            if v is not None:
                busy.append(f"{v} during the {name} {scen} window")
    if busy:
        add(f"- Whole-machine CPU in use (all processes, of {m.get('nproc')} cores): " + "; ".join(busy)
            + ". Values near the core count mean other jobs competed for the CPU.")
    vers = {}
    for d in results.values():
        for name, e in d.get("daemons", {}).items():
            if e.get("run", {}).get("version"):
                vers[name] = e["run"]["version"]
    for name, v in sorted(vers.items()):
        add(f"- {name}: {v}")
    add("")
    add("## Summary")
    add("")
    add("Figures are medians where a scenario is repeated. *Advantage* is how many times better "
        "multilangd is: Java ÷ multilangd for lower-is-better figures, multilangd ÷ Java for "
        "throughput (below 1× means multilangd is worse). † marks figures whose two sides were "
        "not measured in the same run.")
    add("")
    add("| figure | Java 2.5.8 (other reference where marked) | multilangd | advantage | target (multilangd) | met? |")
    add("|---|---|---|---|---|---|")
    for label, scen, key, better, target, fmt, *reference in ROWS:
        data = results.get(scen, {"daemons": {}})
        reference = reference[0] if reference else JAVA_NAME.get(scen, "java")
        je, me = data["daemons"].get(reference), data["daemons"].get("multilangd")
        if "{records}" in label:
            recs = None
            for e in (je, me):
                if e and e.get("run"):
                    recs = e["run"]["setup"].get("records")
            label = label.format(records=f"{recs:,}" if recs else "N")
        j, mv = _num(je, key), _num(me, key)
        ratio = _ratio(j, mv, better)
        if ratio != "—" and je.get("run", {}).get("run_id") != me.get("run", {}).get("run_id"):
            ratio += " †"
        size = _size_note(data)
        add(f"| {label}{f' [{size}]' if size and size != 'full' else ''} | {_cell(je, key, fmt)} | "
            f"{_cell(me, key, fmt)} | {ratio} | {_target_text(target, fmt)} | {_met(mv, target, me)} |")
    add("")
    add("`[medium]`/`[tiny]` after a figure: measured with `--sizes medium|tiny`, not the full size "
        "(1M records, 5 start-ups, 120 s idle window). *pending (not built)*: the multilangd binary "
        "did not exist when the run was made (the harness reports it as not available); *pending*: "
        "the benchmark does not exist yet.")
    add("")
    analysis = Path(__file__).resolve().parent.parent / "ANALYSIS.md"
    if analysis.is_file():
        add(analysis.read_text().rstrip())
        add("")
    for scen in ORDER:
        if scen not in results:
            continue
        add(f"## {SCENARIO_TITLES[scen]}")
        add("")
        data = results[scen]
        setups = [e["run"]["setup"] for e in data["daemons"].values() if e.get("run")]
        if setups:
            add("Setup: " + "; ".join(f"{k}: {v}" for k, v in setups[-1].items()) + ".")
            add("")
        for name in ("java", "java3", "multilangd", "multilangd-polling"):
            e = data["daemons"].get(name)
            if e is None:
                continue
            add(f"**{name}** — {e.get('status')}" + (f": {e['reason']}" if e.get("reason") else ""))
            add("")
            if e.get("figures") and e.get("status") == "ok":
                add("- figures: " + ", ".join(f"`{k}` = {v}" for k, v in e["figures"].items()))
            det = e.get("details") or {}
            if det and e.get("status") == "ok":
                if "runs" in det:
                    add("- runs: " + "; ".join(
                        f"first record {r['first_record_s']} s (all shards {r.get('all_shards_s')} s, "
                        f"load {'/'.join(str(x) for x in r['loadavg_before'])})" for r in det["runs"]))
                else:
                    add("- details: " + ", ".join(f"`{k}` = {json.dumps(v, ensure_ascii=False)}"
                                                  for k, v in det.items()))
            run = e.get("run")
            if run:
                add(f"- run {run['run_id']} ({run['size']}), {run['date']}, {run['duration_s']} s, "
                    f"load average {'/'.join(str(x) for x in run['loadavg_before'])} → "
                    f"{'/'.join(str(x) for x in run['loadavg_after'])}; command: `{run['command']}`")
            meta = e.get("meta") or {}
            if meta.get("command"):
                add(f"- daemon command: `{meta['command']}`")
            add("")
    # Hand-written sections (measurements made outside this harness: metrics overhead, KCL 3.x
    # fleets, fault suite ...), one file each, in file-name order.
    sections = Path(__file__).resolve().parent.parent / "sections"
    for section in sorted(sections.glob("*.md")) if sections.is_dir() else []:
        add(section.read_text().rstrip())
        add("")
    add(ORIENTATION)
    add("## Method")
    add("")
    add(METHOD)
    return "\n".join(lines) + "\n"


ORIENTATION = """\
## Earlier Java measurements (orientation only)

The test-bed work measured the Java daemon earlier on this kind of machine (2 cores, shared),
with its own scripts and the same properties:
- first record 5.6 s hot and 10–37 s cold;
- RSS ~200 MiB at light load and ~1 GiB under 1M records (416 MiB with `-Xmx256m`);
- 1.33 CPU-s per 100k records; 10 % of a core when idle;
- ~36k records/s on kinesalite, bound by the emulator.

The tables above are re-measured side by side and supersede these figures. Where they differ,
the cause is usually load from other jobs on the machine (see the load averages).
"""

METHOD = """\
- Harness: `bench/run.py` (Python 3.11 + boto3 from the test bed venv). It starts its own
  emulators on free loopback ports (kinesis-local for start-up, steady state and latency;
  kinesalite for bulk throughput; dynalite for leases) and stops everything it started by PID.
- The daemon is started from its command line without a shell or wrapper, in its own process
  group: Java = `java -cp "<venv>/lib/python3.11/site-packages/amazon_kclpy/jars/*"
  software.amazon.kinesis.multilang.MultiLangDaemon --properties-file P`, multilangd =
  `target/release/multilangd --properties-file P`. `/proc/<pid>/stat` and `/status` are
  sampled every 0.2 s: CPU = utime+stime of the daemon's own threads; RSS figures are `VmHWM`
  (peak resident set) of the daemon process. The children (one Python record processor per
  shard) are measured separately (their CPU and RSS appear in the details).
- Properties (same keys for both daemons): `retrievalMode = POLLING`, `maxRecords = 10000`,
  `idleTimeBetweenReadsInMillis = 200`, `shardSyncIntervalMillis = 1000`,
  `failoverTimeMillis = 10000`, `parentShardPollIntervalMillis = 1000`, `metricsLevel = NONE`,
  `clientVersionConfig = CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X` (2.x lease protocol; Java 2.5.8 ignores it),
  `initialPositionInStream = TRIM_HORIZON`, default logging of each daemon (to a file).
- Hot start: the lease table is created with boto3 and holds one unowned `TRIM_HORIZON` lease
  per shard. Cold start: no table; the daemon creates it (Java then sleeps a random 1–30 s
  before its first shard sync, hence its spread). Time is from just before the daemon is
  exec'd to the moment the processor receives its first `processRecords` (wall clock).
- Steady state: after both shards delivered, a settle period, then an idle window (no puts):
  daemon CPU over the window, and DynamoDB requests counted by `bench/ddb-count-proxy.js`
  in front of dynalite, divided by leases and minutes. Then light load (10 records/s) for the
  light-load RSS.
- Latency: records carry their send time (taken just before `PutRecord`); latency is the
  processor's receive time minus send time, so it includes the put call itself. In fan-out
  mode kinesis-local pushes one SubscribeToShard event per second per subscription, so the
  figure is dominated by that tick (uniform 0–1 s: p50 ≈ 500 ms, minimum ≈ the put call); the
  daemon's own share is the minimum minus the put call. Real Kinesis pushes records within
  about 70 ms, so the ≤ 100 ms target cannot be checked on this emulator.
- Throughput: 4 shards preloaded with N records of 100 B; each daemon consumes all of them from
  `TRIM_HORIZON` with its own application (lease table). The window runs from the first to the
  last batch received by a processor; records and CPU are counted inside it. The bottleneck is
  named from CPU utilisation in that window: a single-threaded Node process (kinesalite, the h2c
  proxy, dynalite) or a single child near 100 % of a core, the daemon near all cores, or the
  whole machine busy.
- Java only: kinesalite speaks HTTP/1.1 and the Java Kinesis client only h2c, so Java reaches
  kinesalite through `bench/h2c-proxy.js` (its CPU is reported as `h2c_proxy`), and CBOR is off
  (`CBOR_ENABLED=false`) because kinesalite's CBOR timestamps break the Java SDK. multilangd
  talks HTTP/1.1 JSON to kinesalite directly.
- The machine is shared (other jobs compile Rust on it): absolute figures are noisy; the load
  average before each run is recorded, and `machine_busy_cores` shows total machine CPU use.
- Synthetic ceiling: a Rust benchmark of the shard pipeline (encode `processRecords` → pipe →
  a minimal child answering `status`), fed from memory. Hook: `bench/run.py ceiling` runs
  `$BENCH_CEILING_CMD` or `target/release/examples/pipeline_ceiling` with `--records N`; the
  command prints a JSON line with `records_per_sec_per_core` and `mb_per_sec_per_core`.
"""


def write_report(results_dir, path):
    text = build(load_results(results_dir))
    Path(path).write_text(text)
    return text


if __name__ == "__main__":
    import sys
    here = Path(__file__).resolve().parents[1]
    write_report(sys.argv[1] if len(sys.argv) > 1 else here / "results",
                 sys.argv[2] if len(sys.argv) > 2 else here.parent / "BENCHMARKS.md")
