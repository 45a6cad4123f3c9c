"""The benchmark scenarios. Each returns {daemon name: result dict}; a result has `status`
("ok", "failed", "not available", "pending", "n/a"), `figures` (the numbers the report
tabulates), `details` and `meta`."""
import json
import os
import shlex
import statistics
import subprocess
import time
import uuid
from pathlib import Path

from . import kin, testbed
from .daemons import (DaemonFailed, DaemonRun, Java3Spec, ProcessorLogs, first_record_by_shard, first_record_ts,
                      write_properties)
from .testbed import REPO, BenchError

MIB = 1024.0

SIZES = {
    # tiny: a smoke test (seconds per daemon once it is up); figures are not meaningful.
    "tiny": dict(start_reps=1, settle_s=2, idle_s=6, light_s=5, light_rate=10, lat_rate=20, lat_s=4,
                 tput_records=200, ceiling_records=100_000, shard_counts=[16]),
    "medium": dict(start_reps=3, settle_s=15, idle_s=60, light_s=30, light_rate=10, lat_rate=20, lat_s=30,
                   tput_records=100_000, ceiling_records=1_000_000, shard_counts=[16, 64]),
    "full": dict(start_reps=5, settle_s=30, idle_s=120, light_s=60, light_rate=10, lat_rate=20, lat_s=60,
                 tput_records=1_000_000, ceiling_records=10_000_000, shard_counts=[16, 64, 128, 192]),
}

SCENARIOS = ["start-hot", "start-cold", "steady", "latency", "latency-fanout", "throughput", "ceiling", "many-shards",
             "fanout"]

# fanout scenario: records put while the daemon runs (kinesis-local's PutRecords slows down as a
# stream grows, so the load is smaller than the polling throughput scenario's).
FANOUT_LOAD = {"tiny": 400, "medium": 20_000, "full": 40_000}

MANY_SHARDS_RECORDS = 25   # records per shard in the many-shards scenario

START_TIMEOUT_S = 120      # launch -> first record, per run (Java cold start sleeps up to 30 s)


class Ctx:
    def __init__(self, specs, size, workroot, run_id, command):
        self.specs = specs
        self.size = size
        self.p = SIZES[size]
        self.workroot = Path(workroot)
        self.run_id = run_id
        self.command = command

    def workdir(self, *parts):
        d = self.workroot.joinpath(*parts)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def runnable(self, results):
        """Specs that can run; unavailable ones get a 'not available' result right away."""
        out = []
        for spec in self.specs:
            reason = spec.availability()
            if reason:
                results[spec.name] = {"status": "not available", "reason": reason}
            else:
                out.append(spec)
        return out


def _uid():
    return uuid.uuid4().hex[:8]


def _failed(spec, err, run=None):
    r = {"status": "failed", "reason": str(err)}
    if run is not None:
        r["meta"] = run.meta()
    return r


def _put_one_per_shard(kinesis, stream, shards):
    for sh in shards:
        ts = time.time()
        kinesis.put_record(StreamName=stream, Data=kin.payload(ts, 0, 100), PartitionKey="warmup",
                           ExplicitHashKey=sh["HashKeyRange"]["StartingHashKey"])


def _sleep_alive(run, seconds):
    """Sleeps while checking that the daemon is still running."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run.check_alive()
        time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))


def _emus_kinesis_local(workdir, with_counter=False):
    emus = {}
    try:
        emus["kinesis"] = testbed.start_kinesis_local(workdir)
        emus["ddb"] = testbed.start_dynalite(workdir)
        if with_counter:
            emus["counter"] = testbed.start_ddb_counter(emus["ddb"], workdir)
    except BaseException:
        _stop_emus(emus)
        raise
    return emus


def _stop_emus(emus):
    for svc in reversed(list(emus.values())):
        svc.stop()


def _extra_pids(emus, spec):
    names = {"kinesis": emus["kinesis"].name, "ddb": "dynalite", "counter": "ddb-count-proxy", "h2c": "h2c-proxy"}
    out = {}
    for key, svc in emus.items():
        if key == "h2c" and spec.name != "java":
            continue
        out[names[key].replace("-", "_")] = svc.pid
    return out


# ---- start-hot / start-cold ----------------------------------------------------------------

def scenario_start(ctx, hot):
    name = "start-hot" if hot else "start-cold"
    results = {}
    specs = ctx.runnable(results)
    setup = {"emulators": "kinesis-local + dynalite", "shards": 2, "records_in_stream": 20,
             "repetitions": ctx.p["start_reps"],
             "lease_table": "pre-seeded with 2 unowned TRIM_HORIZON leases (boto3)" if hot
             else "absent (new application; the daemon creates it)"}
    if not specs:
        return results, setup
    wd = ctx.workdir(name)
    emus = _emus_kinesis_local(wd)
    try:
        kinesis, ddb = kin.kinesis(emus["kinesis"].endpoint), kin.dynamodb(emus["ddb"].endpoint)
        stream = f"bench-start-{_uid()}"
        shards = kin.create_stream(kinesis, stream, 2)
        kin.put_records(kinesis, stream, 0, 20, 100)
        runs = {s.name: [] for s in specs}
        errors = {}
        for rep in range(ctx.p["start_reps"]):
            for spec in specs:  # interleaved: java, multilangd, java, multilangd, ...
                if spec.name in errors:
                    continue
                app = f"bench-{'hot' if hot else 'cold'}-{spec.name}-{rep}-{_uid()}"
                if hot:
                    kin.seed_leases(ddb, app, shards)
                d = ctx.workdir(name, f"{spec.name}-{rep}")
                out = ctx.workdir(name, f"{spec.name}-{rep}", "out")
                props = d / "app.properties"
                write_properties(props, app=app, stream=stream, kinesis_endpoint=spec.kinesis_endpoint(emus),
                                 ddb_endpoint=emus["ddb"].endpoint, processor_out=out)
                run = DaemonRun(spec, props, d, "kinesis-local", _extra_pids(emus, spec))
                try:
                    with run:
                        t_first = run.wait_for(lambda: first_record_ts(out), START_TIMEOUT_S, "the first record")
                        first_s = t_first - run.launch_ts
                        rss_at_first = run.monitor.last("daemon_rss_kib")
                        try:
                            run.wait_for(lambda: len(first_record_by_shard(out)) >= len(shards) or None,
                                         min(20.0, START_TIMEOUT_S), "a record on every shard")
                            all_s = max(first_record_by_shard(out).values()) - run.launch_ts
                        except DaemonFailed:
                            all_s = None
                    runs[spec.name].append({"first_record_s": round(first_s, 3),
                                            "all_shards_s": round(all_s, 3) if all_s else None,
                                            "daemon_rss_at_first_mib": round(rss_at_first / MIB, 1),
                                            **run.meta()})
                except DaemonFailed as e:
                    run.stop()
                    errors[spec.name] = _failed(spec, e, run)
        for spec in specs:
            if spec.name in errors:
                results[spec.name] = errors[spec.name]
                continue
            firsts = [r["first_record_s"] for r in runs[spec.name]]
            alls = [r["all_shards_s"] for r in runs[spec.name] if r["all_shards_s"] is not None]
            results[spec.name] = {
                "status": "ok",
                "figures": {"first_record_s": round(statistics.median(firsts), 3),
                            "first_record_min_s": min(firsts), "first_record_max_s": max(firsts),
                            "all_shards_s": round(statistics.median(alls), 3) if alls else None},
                "details": {"runs": runs[spec.name]},
                "meta": {"command": runs[spec.name][0]["command"],
                         "loadavg_before": [r["loadavg_before"] for r in runs[spec.name]]},
            }
    finally:
        _stop_emus(emus)
    return results, setup


# ---- steady: idle CPU, light-load RSS, DynamoDB requests per lease per minute ---------------

def _hot_two_shard_app(ctx, scenario, spec, emus, kinesis, ddb, ddb_endpoint, **props_extra):
    """A fresh 2-shard stream with one record per shard and a pre-seeded (hot) lease table;
    writes the daemon's properties. Returns (stream, shards, app, workdir, processor_out, properties path)."""
    prefix = {"latency": "lat", "latency-fanout": "latfo"}.get(scenario, scenario)
    stream = f"bench-{prefix}-{spec.name}-{_uid()}"
    shards = kin.create_stream(kinesis, stream, 2)
    _put_one_per_shard(kinesis, stream, shards)
    app = f"bench-{prefix}-{spec.name}-{_uid()}"
    kin.seed_leases(ddb, app, shards)
    d = ctx.workdir(scenario, spec.name)
    out = ctx.workdir(scenario, spec.name, "out")
    props = d / "app.properties"
    write_properties(props, app=app, stream=stream, kinesis_endpoint=spec.kinesis_endpoint(emus),
                     ddb_endpoint=ddb_endpoint, processor_out=out, **props_extra)
    return stream, shards, app, d, out, props


def scenario_steady(ctx):
    p = ctx.p
    results = {}
    specs = ctx.runnable(results)
    setup = {"emulators": "kinesis-local + dynalite behind a counting proxy (bench/ddb-count-proxy.js)",
             "shards": 2, "idleTimeBetweenReadsInMillis": 200,
             "phases": f"hot start, wait for a record on both shards, settle {p['settle_s']} s, "
                       f"idle window {p['idle_s']} s (no puts), light load {p['light_s']} s at "
                       f"{p['light_rate']} records/s (PutRecord, 100 B)"}
    if not specs:
        return results, setup
    wd = ctx.workdir("steady")
    emus = _emus_kinesis_local(wd, with_counter=True)
    try:
        kinesis, ddb = kin.kinesis(emus["kinesis"].endpoint), kin.dynamodb(emus["ddb"].endpoint)
        for spec in specs:
            stream, shards, app, d, out, props = _hot_two_shard_app(ctx, "steady", spec, emus, kinesis, ddb,
                                                    emus["counter"].endpoint)
            run = DaemonRun(spec, props, d, "kinesis-local", _extra_pids(emus, spec))
            try:
                with run:
                    run.wait_for(lambda: len(first_record_by_shard(out)) >= len(shards) or None,
                                 START_TIMEOUT_S, "a record on both shards")
                    _sleep_alive(run, p["settle_s"])
                    c0, t0 = testbed.ddb_counts(emus["counter"]), time.time()
                    _sleep_alive(run, p["idle_s"])
                    c1, t1 = testbed.ddb_counts(emus["counter"]), time.time()
                    time.sleep(0.3)  # let the monitor sample past t1
                    rss_idle = run.monitor.last("daemon_rss_kib")
                    hwm_idle = run.monitor.last("daemon_hwm_kib")
                    logs = ProcessorLogs(out)
                    before = logs.poll()
                    prod = kin.RateProducer(emus["kinesis"].endpoint, stream, p["light_rate"], p["light_s"])
                    t2 = time.time()
                    prod.start()
                    while prod.is_alive():
                        run.check_alive()
                        prod.join(timeout=0.25)
                    if prod.error:
                        raise BenchError(f"producer failed: {prod.error}")
                    sent = len(prod.sent)
                    try:
                        run.wait_for(lambda: logs.poll() - before >= sent, 15, "the light-load records")
                    except DaemonFailed:
                        pass
                    t3 = time.time()
                    c2 = testbed.ddb_counts(emus["counter"])
                    time.sleep(0.3)
                    mon = run.monitor
                    hwm_light = mon.last("daemon_hwm_kib")
                    idle_cpu = mon.delta("daemon_cpu", t0, t1)
                    light_cpu = mon.delta("daemon_cpu", t2, t3)
                    minutes = (t1 - t0) / 60.0
                    by_op = {op: c1["byOp"].get(op, 0) - c0["byOp"].get(op, 0) for op in c1["byOp"]}
                    by_op = {k: v for k, v in sorted(by_op.items()) if v}
                    leases = len(shards)
                    results[spec.name] = {
                        "status": "ok",
                        "figures": {
                            "idle_cpu_pct": round(100.0 * idle_cpu / (t1 - t0), 2),
                            "rss_light_mib": round(hwm_light / MIB, 1),
                            "ddb_req_per_lease_min": round((c1["total"] - c0["total"]) / leases / minutes, 1),
                        },
                        "details": {
                            "idle_window_s": round(t1 - t0, 1),
                            "idle_cpu_s": round(idle_cpu, 3),
                            "rss_idle_mib": round(rss_idle / MIB, 1),
                            "hwm_after_idle_mib": round(hwm_idle / MIB, 1),
                            "light_window_s": round(t3 - t2, 1),
                            "light_records_sent": sent,
                            "light_records_received": logs.total - before,
                            "light_cpu_pct": round(100.0 * light_cpu / max(1e-9, t3 - t2), 2),
                            "rss_end_mib": round(mon.last("daemon_rss_kib") / MIB, 1),
                            "children_rss_mib": round(mon.last("children_rss_kib") / MIB, 1),
                            "children_n": mon.last("children_n"),
                            "ddb_idle_by_op_per_min": {k: round(v / minutes, 1) for k, v in by_op.items()},
                            "ddb_idle_total_per_min": round((c1["total"] - c0["total"]) / minutes, 1),
                            "ddb_light_total_per_min": round((c2["total"] - c1["total"]) / max(1e-9, (t3 - t1) / 60), 1),
                            "kinesis_emulator_idle_cpu_pct": round(
                                100 * mon.delta(f"{emus['kinesis'].name.replace('-', '_')}_cpu", t0, t1) / (t1 - t0), 1),
                            "machine_busy_cores_idle": round(mon.delta("machine_busy", t0, t1) / (t1 - t0), 2),
                        },
                    }
                results[spec.name]["meta"] = run.meta()
            except (DaemonFailed, BenchError) as e:
                run.stop()
                results[spec.name] = _failed(spec, e, run)
    finally:
        _stop_emus(emus)
    return results, setup


# ---- latency: put -> child, polling mode, kinesis-local --------------------------------------

def _pct(sorted_vals, q):
    if not sorted_vals:
        return None
    k = (len(sorted_vals) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def scenario_latency(ctx, fanout=False):
    p = ctx.p
    results = {}
    specs = ctx.runnable(results)
    scenario = "latency-fanout" if fanout else "latency"
    mode = ("FANOUT (SubscribeToShard; kinesis-local emits one event per second per subscription)" if fanout
            else "POLLING, idleTimeBetweenReadsInMillis=200, maxRecords=10000")
    setup = {"emulators": "kinesis-local + dynalite", "shards": 2, "mode": mode,
             "load": f"PutRecord one at a time, {p['lat_rate']} records/s for {p['lat_s']} s, "
             "100 B, send time (taken just before the call) in the payload; latency = processor receive time - send time"}
    if not specs:
        return results, setup
    extra = {"retrievalMode": "FANOUT"} if fanout else {}
    wd = ctx.workdir(scenario)
    emus = _emus_kinesis_local(wd)
    try:
        kinesis, ddb = kin.kinesis(emus["kinesis"].endpoint), kin.dynamodb(emus["ddb"].endpoint)
        for spec in specs:
            stream, shards, app, d, out, props = _hot_two_shard_app(ctx, scenario, spec, emus, kinesis, ddb,
                                                    emus["ddb"].endpoint, mode="latency", extra=extra)
            run = DaemonRun(spec, props, d, "kinesis-local", _extra_pids(emus, spec))
            try:
                with run:
                    run.wait_for(lambda: len(first_record_by_shard(out)) >= len(shards) or None,
                                 START_TIMEOUT_S, "a record on both shards")
                    _sleep_alive(run, 2.0)
                    logs = ProcessorLogs(out)
                    prod = kin.RateProducer(emus["kinesis"].endpoint, stream, p["lat_rate"], p["lat_s"])
                    t_start = time.time()
                    prod.start()
                    while prod.is_alive():
                        run.check_alive()
                        prod.join(timeout=0.25)
                    if prod.error:
                        raise BenchError(f"producer failed: {prod.error}")
                    sent = len(prod.sent)

                    def got_all():
                        logs.poll()
                        return sum(1 for r, s in logs.records if s >= t_start) >= sent

                    try:
                        run.wait_for(got_all, 15, "all latency records")
                    except DaemonFailed:
                        pass
                lat = sorted((r - s) * 1000.0 for r, s in logs.records if s >= t_start)
                puts = sorted(d * 1000.0 for _, d in prod.sent)
                results[spec.name] = {
                    "status": "ok" if lat else "failed",
                    "figures": {"p50_ms": round(_pct(lat, 0.5), 1) if lat else None,
                                "p99_ms": round(_pct(lat, 0.99), 1) if lat else None},
                    "details": {"sent": sent, "received": len(lat),
                                "min_ms": round(lat[0], 1) if lat else None,
                                "max_ms": round(lat[-1], 1) if lat else None,
                                "mean_ms": round(statistics.fmean(lat), 1) if lat else None,
                                "put_call_p50_ms": round(_pct(puts, 0.5), 1) if puts else None},
                    "meta": run.meta(),
                }
                if not lat:
                    results[spec.name]["reason"] = "no latency records received"
            except (DaemonFailed, BenchError) as e:
                run.stop()
                results[spec.name] = _failed(spec, e, run)
    finally:
        _stop_emus(emus)
    return results, setup


# ---- throughput: 4 shards, preloaded records, kinesalite ------------------------------------

CAPACITY = {"kinesalite": 1.0, "h2c_proxy": 1.0, "dynalite": 1.0}  # single-threaded Node processes


def name_bottleneck(util, busiest_child, nproc, machine_busy):
    """Names the bottleneck from per-process CPU utilisation (in cores) over the window.
    Node emulators/proxies and each child are single-threaded (saturated near 1 core); the
    daemon may use every core. Returns (label, explanation)."""
    candidates = []
    for k, cap in CAPACITY.items():
        if k in util:
            candidates.append((util[k] / cap, k if k != "h2c_proxy" else "emulator front (h2c proxy)"))
    candidates.append((busiest_child, "children (busiest processor)"))
    candidates.append((util["daemon"] / nproc, "daemon"))
    candidates = [(r, n if n not in ("kinesalite", "dynalite") else f"emulator ({n})") for r, n in candidates]
    candidates.sort(reverse=True)
    top_ratio, top = candidates[0]
    if top_ratio >= 0.85:
        return top, f"{top} at {top_ratio:.0%} of its capacity"
    if machine_busy >= 0.9 * nproc:
        return "machine CPU", (f"all {nproc} cores busy ({machine_busy:.2f} cores incl. other users); "
                               f"largest: {top} at {top_ratio:.0%}")
    return f"none saturated (largest: {top})", f"{top} at {top_ratio:.0%} of its capacity"


def scenario_throughput(ctx):
    p = ctx.p
    n = p["tput_records"]
    results = {}
    specs = ctx.runnable(results)
    setup = {"emulators": "kinesalite + dynalite (Java through bench/h2c-proxy.js, CBOR off)", "shards": 4,
             "records": n, "record_bytes": 100, "processor": "bench_processor.py count mode, checkpoint per batch",
             "maxRecords": 10000, "idleTimeBetweenReadsInMillis": 200}
    if not specs:
        return results, setup
    wd = ctx.workdir("throughput")
    emus = {}
    try:
        emus["kinesis"] = testbed.start_kinesalite(wd)
        emus["ddb"] = testbed.start_dynalite(wd)
        if any(s.name == "java" for s in specs):
            emus["h2c"] = testbed.start_h2c_proxy(emus["kinesis"], wd)
        kinesis, ddb = kin.kinesis(emus["kinesis"].endpoint), kin.dynamodb(emus["ddb"].endpoint)
        stream = f"bench-tput-{_uid()}"
        shards = kin.create_stream(kinesis, stream, 4)
        setup["preload_s"] = round(kin.preload(emus["kinesis"].endpoint, stream, n, 100), 1)
        timeout = 60 + n / 2000.0
        for spec in specs:
            app = f"bench-tput-{spec.name}-{_uid()}"
            kin.seed_leases(ddb, app, shards)
            d = ctx.workdir("throughput", spec.name)
            out = ctx.workdir("throughput", spec.name, "out")
            props = d / "app.properties"
            write_properties(props, app=app, stream=stream, kinesis_endpoint=spec.kinesis_endpoint(emus),
                             ddb_endpoint=emus["ddb"].endpoint, processor_out=out)
            run = DaemonRun(spec, props, d, "kinesalite", _extra_pids(emus, spec))
            logs = ProcessorLogs(out)
            try:
                with run:
                    run.wait_for(lambda: logs.poll() >= n, timeout, f"{n} records")
                    time.sleep(0.3)
                batches = sorted(logs.batches)
                t_first, t_last = batches[0][0], batches[-1][0]
                counted = sum(k for t, k in batches if t > t_first)
                w = max(1e-6, t_last - t_first)
                mon = run.monitor
                util = {"daemon": mon.delta("daemon_cpu", t_first, t_last) / w,
                        "children": mon.delta("children_cpu", t_first, t_last) / w}
                for key in ("kinesalite", "dynalite", "h2c_proxy"):
                    if f"{key}_cpu" in mon.samples[-1]:
                        util[key] = mon.delta(f"{key}_cpu", t_first, t_last) / w
                machine_busy = mon.delta("machine_busy", t_first, t_last) / w
                _, busiest = mon.busiest_child(t_first, t_last)
                bn, why = name_bottleneck(util, busiest / w, os.cpu_count(), machine_busy)
                daemon_cpu = mon.delta("daemon_cpu", t_first, t_last)
                results[spec.name] = {
                    "status": "ok",
                    "figures": {
                        "records_per_s": round(counted / w) if counted else None,
                        "cpu_s_per_100k": round(daemon_cpu / counted * 1e5, 3) if counted else None,
                        "rss_loaded_mib": round(mon.last("daemon_hwm_kib") / MIB, 1),
                        "bottleneck": bn,
                    },
                    "details": {
                        "records_delivered": logs.total, "batches": len(batches),
                        "window_s": round(w, 2), "records_in_window": counted,
                        "launch_to_first_record_s": round(t_first - run.launch_ts, 2),
                        "launch_to_last_record_s": round(t_last - run.launch_ts, 2),
                        "daemon_cpu_s_window": round(daemon_cpu, 2),
                        "daemon_cpu_s_total": round(mon.last("daemon_cpu"), 2),
                        "utilisation_cores": {k: round(v, 2) for k, v in util.items()},
                        "busiest_child_cores": round(busiest / w, 2),
                        "machine_busy_cores": round(machine_busy, 2),
                        "bottleneck_reason": why,
                        "children_peak_rss_mib": round(mon.peak("children_rss_kib") / MIB, 1),
                    },
                    "meta": run.meta(),
                }
            except (DaemonFailed, BenchError) as e:
                run.stop()
                results[spec.name] = _failed(spec, e, run)
    finally:
        _stop_emus(emus)
    return results, setup


# ---- ceiling: the shard pipeline fed from memory (Rust benchmark, hook) ----------------------

def ceiling_command():
    """The synthetic-ceiling benchmark command, or None. Contract: it accepts `--records N` and
    prints, as its last stdout line, a JSON object with at least `records_per_sec_per_core` and
    `mb_per_sec_per_core` (optionally `records_per_sec`, `cpu_s`, `record_bytes`)."""
    env = os.environ.get("BENCH_CEILING_CMD")
    if env:
        return shlex.split(env)
    for cand in (REPO / "target" / "release" / "examples" / "pipeline_ceiling",
                 REPO / "target" / "release" / "pipeline-ceiling"):
        if cand.is_file() and os.access(cand, os.X_OK):
            return [str(cand)]
    return None


def scenario_ceiling(ctx):
    results = {}
    setup = {"what": "encode processRecords -> pipe -> minimal child answering status, fed from memory",
             "records": ctx.p["ceiling_records"]}
    for spec in ctx.specs:
        if spec.name == "java":
            results["java"] = {"status": "n/a", "reason": "no Java equivalent is measured"}
            continue
        cmd = ceiling_command()
        if cmd is None:
            results[spec.name] = {"status": "pending", "reason": "no ceiling benchmark built yet (hook: "
                                  "BENCH_CEILING_CMD or target/release/examples/pipeline_ceiling)"}
            continue
        argv = cmd + ["--records", str(ctx.p["ceiling_records"])]
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=600)
            lines = [ln for ln in r.stdout.strip().splitlines() if ln.strip().startswith("{")]
            if r.returncode != 0 or not lines:
                raise BenchError(f"{argv[0]} exited {r.returncode}: {r.stderr.strip()[-500:]}")
            data = json.loads(lines[-1])
            results[spec.name] = {
                "status": "ok",
                "figures": {"records_per_sec_per_core": data["records_per_sec_per_core"],
                            "mb_per_sec_per_core": data["mb_per_sec_per_core"]},
                "details": data, "meta": {"command": " ".join(shlex.quote(a) for a in argv)},
            }
        except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, BenchError) as e:
            results[spec.name] = {"status": "failed", "reason": str(e)}
    return results, setup


# ---- many-shards: one worker, 16..192 shards, hot start --------------------------------------

def shard_counts(ctx):
    """Shard counts of the many-shards scenario: BENCH_SHARD_COUNTS=16,64 or the size's list."""
    env = os.environ.get("BENCH_SHARD_COUNTS", "").strip()
    if env:
        return [int(x) for x in env.split(",") if x.strip()]
    return list(ctx.p["shard_counts"])


def many_shards_idle_ms():
    """idleTimeBetweenReadsInMillis of the many-shards scenario: BENCH_IDLE_MS or 200."""
    return int(os.environ.get("BENCH_IDLE_MS", "").strip() or 200)


def scenario_many_shards(ctx):
    p = ctx.p
    results = {}
    specs = ctx.runnable(results)
    counts = shard_counts(ctx)
    idle_ms = many_shards_idle_ms()
    # Figures at another polling interval than 200 ms carry it in their key (`_idle1500`), so
    # runs at both intervals can sit side by side in one result file.
    sfx = "" if idle_ms == 200 else f"_idle{idle_ms}"
    setup = {"emulators": "kinesis-local + dynalite", "shard_counts": counts,
             "records_per_shard": MANY_SHARDS_RECORDS, "idleTimeBetweenReadsInMillis": idle_ms,
             "phases": f"hot start (pre-seeded leases), wait until every shard delivered a record, "
                       f"settle {p['settle_s']} s, idle window {p['idle_s']} s"}
    if not specs:
        return results, setup
    wd = ctx.workdir("many-shards")
    emus = _emus_kinesis_local(wd)
    try:
        kinesis, ddb = kin.kinesis(emus["kinesis"].endpoint), kin.dynamodb(emus["ddb"].endpoint)
        for spec in specs:
            figures, details, meta = {}, {}, None
            try:
                for n in counts:
                    stream = f"bench-many-{n}-{spec.name}-{_uid()}"
                    shards = kin.create_stream(kinesis, stream, n, timeout=60)
                    _put_one_per_shard(kinesis, stream, shards)
                    kin.put_records(kinesis, stream, 0, MANY_SHARDS_RECORDS * n - n, 100)
                    app = f"bench-many-{n}-{spec.name}-{_uid()}"
                    kin.seed_leases(ddb, app, shards)
                    d = ctx.workdir("many-shards", f"{spec.name}-{n}")
                    out = ctx.workdir("many-shards", f"{spec.name}-{n}", "out")
                    props = d / "app.properties"
                    write_properties(props, app=app, stream=stream, kinesis_endpoint=spec.kinesis_endpoint(emus),
                                     ddb_endpoint=emus["ddb"].endpoint, processor_out=out,
                                     extra={"idleTimeBetweenReadsInMillis": str(idle_ms)})
                    run = DaemonRun(spec, props, d, "kinesis-local", _extra_pids(emus, spec))
                    try:
                        with run:
                            run.wait_for(lambda: len(first_record_by_shard(out)) >= n or None,
                                         START_TIMEOUT_S + 2 * n, f"a record on all {n} shards")
                            all_s = max(first_record_by_shard(out).values()) - run.launch_ts
                            busy_cpu = run.monitor.last("daemon_cpu")
                            _sleep_alive(run, p["settle_s"])
                            t0 = time.time()
                            _sleep_alive(run, p["idle_s"])
                            t1 = time.time()
                            time.sleep(0.3)
                            mon = run.monitor
                            idle_cpu = mon.delta("daemon_cpu", t0, t1)
                            figures[f"all_shards_s_{n}{sfx}"] = round(all_s, 2)
                            figures[f"rss_peak_mib_{n}{sfx}"] = round(mon.peak("daemon_hwm_kib") / MIB, 1)
                            figures[f"idle_cpu_pct_{n}{sfx}"] = round(100.0 * idle_cpu / (t1 - t0), 2)
                            details[f"{n}{sfx}"] = {
                                "idleTimeBetweenReadsInMillis": idle_ms,
                                "run": f"{ctx.run_id}: {ctx.command}",
                                "all_shards_s": round(all_s, 2),
                                "daemon_cpu_s_until_all_delivered": round(busy_cpu, 2),
                                "rss_peak_mib": round(mon.peak("daemon_hwm_kib") / MIB, 1),
                                "rss_idle_mib": round(mon.last("daemon_rss_kib") / MIB, 1),
                                "threads_peak": mon.peak("daemon_threads"),
                                "fds_peak": mon.peak("daemon_fds"),
                                "idle_cpu_pct": round(100.0 * idle_cpu / (t1 - t0), 2),
                                "idle_cpu_s_per_shard_min": round(idle_cpu / n / ((t1 - t0) / 60.0), 4),
                                "children_n": mon.last("children_n"),
                                "children_rss_mib": round(mon.last("children_rss_kib") / MIB, 1),
                                "machine_busy_cores_idle": round(mon.delta("machine_busy", t0, t1) / (t1 - t0), 2),
                            }
                        meta = run.meta()
                    except DaemonFailed:
                        run.stop()
                        raise
                    finally:
                        # kinesis-local's SHARD_LIMIT (200) counts every open stream.
                        kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
                results[spec.name] = {"status": "ok", "figures": figures, "details": details, "meta": meta or {}}
            except (DaemonFailed, BenchError) as e:
                results[spec.name] = _failed(spec, e)
                results[spec.name]["details"] = details
    finally:
        _stop_emus(emus)
    return results, setup


# ---- fanout: enhanced fan-out, multilangd vs Java 3.1.3, kinesis-local + moto ------------------

def _fanout_specs(ctx):
    """multilangd and, in place of Java 2.5.8, the Java 3.1.3 daemon (whose default is fan-out)."""
    out = []
    for spec in ctx.specs:
        out.append(Java3Spec(spec.java_opts) if spec.name == "java" else spec)
    return out


def _fanout_props(path, *, app, stream, emus, out, worker, polling=False):
    # The same keys for both daemons: FANOUT, the 3.x lease protocol (Java 3.1.3's default; set
    # explicitly so multilangd runs it too on a new application), the SDK v2 credentials name
    # (Java 3.x refuses the v1 one; multilangd accepts both), no polling keys.
    write_properties(path, app=app, stream=stream, kinesis_endpoint=emus["kinesis"].endpoint,
                            ddb_endpoint=emus["ddb"].endpoint, processor_out=out, mode="latency",
                            extra={"retrievalMode": "FANOUT", "clientVersionConfig": "CLIENT_VERSION_CONFIG_3X",
                                   "AWSCredentialsProvider": None,
                                   "AwsCredentialsProvider": "DefaultCredentialsProvider",
                                   "maxRecords": None, "idleTimeBetweenReadsInMillis": None,
                                   "workerId": worker})
    if polling:  # the same file in polling mode (the reference for "no worse than polling")
        write_properties(path, app=app, stream=stream, kinesis_endpoint=emus["kinesis"].endpoint,
                         ddb_endpoint=emus["ddb"].endpoint, processor_out=out, mode="latency",
                         extra={"retrievalMode": "POLLING", "clientVersionConfig": "CLIENT_VERSION_CONFIG_3X",
                                "AWSCredentialsProvider": None,
                                "AwsCredentialsProvider": "DefaultCredentialsProvider",
                                "workerId": worker})
    return path


def scenario_fanout(ctx):
    p = ctx.p
    load_n = FANOUT_LOAD[ctx.size]
    results = {}
    specs = []
    for spec in _fanout_specs(ctx):
        reason = spec.availability()
        if reason:
            results[spec.name] = {"status": "not available", "reason": reason}
        else:
            specs.append(spec)
    setup = {"emulators": "kinesis-local + moto (DynamoDB; Java 3.1.3 cannot use dynalite)", "shards": 4,
             "mode": "FANOUT, clientVersionConfig=CLIENT_VERSION_CONFIG_3X (the 3.x lease protocol)",
             "phases": (f"cold start (new application, 1 record per shard in the stream); idle "
                        f"{p['idle_s']} s; latency: PutRecord {p['lat_rate']}/s for {p['lat_s']} s; "
                        f"load: {load_n:,} × 100 B put with PutRecords while the daemon runs; SIGTERM; "
                        f"hot start (same application and workerId, 1 new record per shard)"),
             "records": load_n,
             "multilangd-polling": "multilangd with the same phases in POLLING (maxRecords 10000, 200 ms)",
             "note": "kinesis-local pushes one SubscribeToShard event per second per subscription"}
    if not specs:
        return results, setup
    wd = ctx.workdir("fanout")
    emus = {}
    try:
        emus["kinesis"] = testbed.start_kinesis_local(wd)
        emus["ddb"] = testbed.start_moto(wd)
        kinesis = kin.kinesis(emus["kinesis"].endpoint)
        extra_pids = {"kinesis_local": emus["kinesis"].pid, "moto": emus["ddb"].pid}
        # multilangd also runs the same phases in polling mode (maxRecords 10000, 200 ms).
        variants = [(spec, False) for spec in specs] + [(spec, True) for spec in specs if spec.name == "multilangd"]
        for spec, polling in variants:
            name = f"{spec.name}-polling" if polling else spec.name
            stream = f"bench-fo-{name}-{_uid()}"
            shards = kin.create_stream(kinesis, stream, 4)
            _put_one_per_shard(kinesis, stream, shards)
            app = f"bench-fo-{name}-{_uid()}"
            worker = f"bench-{name}"
            figures, details = {}, {}
            run = None
            try:
                # Cold start, idle, latency, load.
                d = ctx.workdir("fanout", name)
                out = ctx.workdir("fanout", name, "out")
                props = _fanout_props(d / "app.properties", app=app, stream=stream, emus=emus, out=out, worker=worker,
                                      polling=polling)
                run = DaemonRun(spec, props, d, "kinesis-local", extra_pids)
                with run:
                    t_first = run.wait_for(lambda: first_record_ts(out), 240, "the first record (cold)")
                    figures["first_record_cold_s"] = round(t_first - run.launch_ts, 2)
                    run.wait_for(lambda: len(first_record_by_shard(out)) >= len(shards) or None, 120,
                                 "a record on every shard")
                    details["all_shards_cold_s"] = round(max(first_record_by_shard(out).values()) - run.launch_ts, 2)
                    _sleep_alive(run, 5.0)
                    mon = run.monitor
                    t0 = time.time()
                    _sleep_alive(run, p["idle_s"])
                    t1 = time.time()
                    idle_rate = mon.delta("daemon_cpu", t0, t1) / (t1 - t0)
                    figures["idle_cpu_pct"] = round(idle_rate * 100, 2)

                    logs = ProcessorLogs(out)
                    logs.poll()
                    prod = kin.RateProducer(emus["kinesis"].endpoint, stream, p["lat_rate"], p["lat_s"])
                    lat_start = time.time()
                    prod.start()
                    while prod.is_alive():
                        run.check_alive()
                        prod.join(timeout=0.25)
                    if prod.error:
                        raise BenchError(f"producer failed: {prod.error}")
                    lat_end = time.time()

                    def lat_records():
                        logs.poll()
                        return [r - s for r, s in logs.records if lat_start <= s <= lat_end]

                    run.wait_for(lambda: len(lat_records()) >= len(prod.sent) or None, 30, "all latency records")
                    lat = sorted(x * 1000.0 for x in lat_records())
                    figures["p50_ms"] = round(_pct(lat, 0.5), 1)
                    figures["p99_ms"] = round(_pct(lat, 0.99), 1)
                    details.update(latency_sent=len(prod.sent), latency_min_ms=round(lat[0], 1),
                                   latency_max_ms=round(lat[-1], 1))
                    _sleep_alive(run, 2.0)

                    logs.poll()
                    before = logs.total
                    c0, w0 = mon.last("daemon_cpu"), time.time()
                    put_s = kin.preload(emus["kinesis"].endpoint, stream, load_n, 100)
                    run.wait_for(lambda: logs.poll() - before >= load_n or None, 120 + load_n / 200,
                                 f"{load_n} records")
                    time.sleep(0.5)
                    c1, w1 = mon.last("daemon_cpu"), time.time()
                    window = w1 - w0
                    cpu = c1 - c0
                    figures["cpu_s_per_100k"] = round(cpu / load_n * 1e5, 3)
                    figures["rss_peak_mib"] = round(mon.peak("daemon_hwm_kib") / MIB, 1)
                    # Idle CPU subtracted: unreliable when the puts are slow (idle × window can
                    # exceed the consumption's own CPU; clamped at 0), so only a detail.
                    details.update(cpu_s_per_100k_net=round(max(0.0, cpu - idle_rate * window) / load_n * 1e5, 3),
                                   load_records_per_s=round(load_n / window, 1))
                    details.update(load_put_s=round(put_s, 1), load_window_s=round(window, 1),
                                   load_daemon_cpu_s=round(cpu, 2),
                                   machine_busy_cores_load=round(mon.delta("machine_busy", w0, w1) / window, 2),
                                   children_peak_rss_mib=round(mon.peak("children_rss_kib") / MIB, 1))
                details["stop_s"] = run.meta()["stop_s"]
                cold_meta = run.meta()

                # Hot start: the same application and worker after a graceful stop.
                _put_one_per_shard(kinesis, stream, shards)
                d2 = ctx.workdir("fanout", f"{name}-hot")
                out2 = ctx.workdir("fanout", f"{name}-hot", "out")
                props2 = _fanout_props(d2 / "app.properties", app=app, stream=stream, emus=emus, out=out2,
                                       worker=worker, polling=polling)
                run = DaemonRun(spec, props2, d2, "kinesis-local", extra_pids)
                with run:
                    t_first = run.wait_for(lambda: first_record_ts(out2), 240, "the first record (hot)")
                    figures["first_record_hot_s"] = round(t_first - run.launch_ts, 2)
                results[name] = {"status": "ok", "figures": figures, "details": details, "meta": cold_meta}
            except (DaemonFailed, BenchError) as e:
                if run is not None:
                    run.stop()
                results[name] = _failed(spec, e, run)
                results[name]["details"] = dict(details, **{"figures_so_far": figures})
    finally:
        _stop_emus(emus)
    return results, setup


def run_scenario(ctx, name):
    if name == "many-shards":
        return scenario_many_shards(ctx)
    if name == "start-hot":
        return scenario_start(ctx, hot=True)
    if name == "start-cold":
        return scenario_start(ctx, hot=False)
    if name == "steady":
        return scenario_steady(ctx)
    if name == "latency":
        return scenario_latency(ctx)
    if name == "latency-fanout":
        return scenario_latency(ctx, fanout=True)
    if name == "throughput":
        return scenario_throughput(ctx)
    if name == "ceiling":
        return scenario_ceiling(ctx)
    if name == "fanout":
        return scenario_fanout(ctx)
    raise ValueError(name)
