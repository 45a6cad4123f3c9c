#!/usr/bin/env python3
"""Benchmark harness: the reference Java MultiLangDaemon 2.5.8 and multilangd, back to back on
the same local emulators.

    bench/run.py SCENARIO [SCENARIO ...] --daemon java|multilangd|both [--sizes tiny|medium|full]

Scenarios: start-hot start-cold steady latency throughput ceiling, or `all`.
Results are merged into RESULTS_DIR/<scenario>.json (one entry per daemon) and the report
(BENCHMARKS.md) is regenerated from them. See bench/README.md.
"""
import argparse
import datetime
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _ensure_boto3():
    """Re-exec with the test bed's venv Python when this interpreter lacks boto3."""
    try:
        import boto3  # noqa: F401
        return
    except ImportError:
        pass
    sys.path.insert(0, str(HERE))
    from harness import testbed
    py = testbed.venv_python()
    if Path(sys.executable).resolve() == py.resolve() or os.environ.get("BENCH_REEXEC"):
        sys.exit(f"boto3 is not importable from {sys.executable}")
    os.environ["BENCH_REEXEC"] = "1"
    os.execv(str(py), [str(py), __file__, *sys.argv[1:]])


_ensure_boto3()
sys.path.insert(0, str(HERE))

from harness import report, testbed  # noqa: E402
from harness.daemons import make_specs  # noqa: E402
from harness.scenarios import SCENARIOS, SIZES, Ctx, run_scenario  # noqa: E402


def _interrupt(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenarios", nargs="+", choices=SCENARIOS + ["all"], metavar="SCENARIO",
                    help=f"one or more of: {' '.join(SCENARIOS)} all")
    ap.add_argument("--daemon", choices=["java", "multilangd", "both"], default="both")
    ap.add_argument("--sizes", choices=list(SIZES), default="medium",
                    help="tiny = smoke test (seconds, 200 records); medium; full = the published figures (1M records)")
    ap.add_argument("--results", type=Path, default=HERE / "results",
                    help="directory of per-scenario result JSON files (merged, one entry per daemon)")
    ap.add_argument("--report", type=Path, default=None,
                    help="report to regenerate (default: <repo>/BENCHMARKS.md for the default results dir, "
                         "else RESULTS/BENCHMARKS.md); 'none' to skip")
    ap.add_argument("--multilangd-bin", default=None,
                    help="multilangd binary (default: $MULTILANGD_BIN or <repo>/target/release/multilangd)")
    ap.add_argument("--java-opts", default=os.environ.get("BENCH_JAVA_OPTS", ""),
                    help="extra JVM options, e.g. -Xmx256m (default: $BENCH_JAVA_OPTS)")
    ap.add_argument("--workdir", type=Path, default=None, help="scratch directory (default: a new temp dir)")
    ap.add_argument("--keep-work", action="store_true", help="keep the scratch directory (logs, properties)")
    ap.add_argument("--command-label", default=None, help="command recorded in the results (run-all.sh sets it)")
    args = ap.parse_args(argv)

    scenarios = SCENARIOS if "all" in args.scenarios else list(dict.fromkeys(args.scenarios))
    specs = make_specs(args.daemon, args.multilangd_bin, shlex.split(args.java_opts))
    run_id = datetime.datetime.now().strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:4]
    command = args.command_label or " ".join(["bench/run.py", *[shlex.quote(a) for a in (argv or sys.argv[1:])]])
    workroot = args.workdir or Path(tempfile.mkdtemp(prefix=f"multilangd-bench-{run_id}-"))
    workroot.mkdir(parents=True, exist_ok=True)
    args.results.mkdir(parents=True, exist_ok=True)
    ctx = Ctx(specs, args.sizes, workroot, run_id, command)

    signal.signal(signal.SIGTERM, _interrupt)
    machine = testbed.machine_info()
    versions = {s.name: (s.version() if not s.availability() else None) for s in specs}
    failed = False
    try:
        for name in scenarios:
            started = time.time()
            load_before = testbed.loadavg()
            print(f"[bench] {name} ({args.sizes}, {args.daemon}) ...", flush=True)
            try:
                results, setup = run_scenario(ctx, name)
            except Exception as e:  # a harness or emulator problem: record it, go on
                traceback.print_exc()
                results = {s.name: {"status": "failed", "reason": f"harness error: {type(e).__name__}: {e}"}
                           for s in specs}
                setup = {}
            entry_meta = {"run_id": run_id, "size": args.sizes, "command": command,
                          "date": datetime.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
                          "duration_s": round(time.time() - started, 1), "machine": machine,
                          "loadavg_before": load_before, "loadavg_after": testbed.loadavg(),
                          "back_to_back": [s.name for s in specs], "setup": setup}
            for dname, res in results.items():
                res["run"] = dict(entry_meta, version=versions.get(dname))
                status = res["status"]
                figs = res.get("figures") or res.get("reason", "")
                print(f"[bench]   {dname}: {status} {json.dumps(figs)}", flush=True)
                if status == "failed":
                    failed = True
            _merge(args.results / f"{name}.json", name, results)
    except KeyboardInterrupt:
        print("[bench] interrupted; stopping every process started", file=sys.stderr)
        failed = True
    finally:
        testbed.stop_all()
        if failed or args.keep_work:
            print(f"[bench] scratch kept: {workroot}", flush=True)
        elif args.workdir is None:
            shutil.rmtree(workroot, ignore_errors=True)

    report_path = args.report
    if report_path is None:
        report_path = (testbed.REPO / "BENCHMARKS.md" if args.results.resolve() == (HERE / "results").resolve()
                       else args.results / "BENCHMARKS.md")
    if str(report_path) != "none":
        report.write_report(args.results, Path(report_path))
        print(f"[bench] report: {report_path}", flush=True)
    return 1 if failed else 0


def _merge(path, name, results):
    data = {"scenario": name, "daemons": {}}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except ValueError:
            pass
    daemons = data.setdefault("daemons", {})
    if name == "many-shards":
        # Shard counts and polling intervals measured in separate runs compose: figures and
        # details are per shard count (each detail names its run); the newest run wins per key.
        for dname, res in results.items():
            old = daemons.get(dname)
            if res.get("status") == "ok" and old and old.get("status") == "ok":
                res["figures"] = {**old.get("figures", {}), **res.get("figures", {})}
                res["details"] = {**old.get("details", {}), **res.get("details", {})}
    daemons.update(results)
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    sys.exit(main())
