#!/usr/bin/env python3
"""Tests for the benchmark harness, so that it cannot rot.

    python bench/test_smoke.py            # (or: python -m unittest bench/test_smoke.py)

* the report renders ratios / targets from synthetic results;
* a missing multilangd binary is reported as "not available" (no crash, exit 0);
* `--sizes tiny` smoke run of every scenario against a real daemon: the daemon is chosen with
  BENCH_SMOKE_DAEMON=java|multilangd|both (default multilangd; skipped when it is not
  available). Needs MULTILANGD_TESTBED (emulators, venv, Java jars).
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import report  # noqa: E402
from harness.daemons import MultilangdSpec, JavaSpec  # noqa: E402
from harness.scenarios import SCENARIOS, name_bottleneck  # noqa: E402


def _python():
    """An interpreter with boto3 (the test bed venv), else this one."""
    try:
        from harness import testbed
        return str(testbed.venv_python())
    except Exception:
        return sys.executable


def _run(args, timeout):
    return subprocess.run([_python(), str(HERE / "run.py"), *args], capture_output=True, text=True,
                          timeout=timeout)


class ReportTest(unittest.TestCase):
    def test_ratio_target_and_pending(self):
        run = {"run_id": "r1", "size": "full", "command": "bench/run-all.sh", "date": "2026-01-01T00:00:00",
               "duration_s": 1, "machine": {"nproc": 2, "mem_gib": 24, "kernel": "x", "cpu": "y"},
               "loadavg_before": [1, 1, 1], "loadavg_after": [1, 1, 1], "setup": {"records": 1000000},
               "version": "v"}
        with tempfile.TemporaryDirectory() as d:
            Path(d, "start-hot.json").write_text(json.dumps({"daemons": {
                "java": {"status": "ok", "figures": {"first_record_s": 6.0}, "run": run},
                "multilangd": {"status": "ok", "figures": {"first_record_s": 0.2}, "run": run}}}))
            Path(d, "throughput.json").write_text(json.dumps({"daemons": {
                "java": {"status": "ok", "figures": {"records_per_s": 30000, "rss_loaded_mib": 1000.0}, "run": run},
                "multilangd": {"status": "ok", "figures": {"records_per_s": 60000, "rss_loaded_mib": 40.0},
                               "run": dict(run, run_id="r2")}}}))
            Path(d, "steady.json").write_text(json.dumps({"daemons": {
                "java": {"status": "ok", "figures": {"idle_cpu_pct": 10.0}, "run": run},
                "multilangd": {"status": "not available", "reason": "binary not found", "run": run}}}))
            text = report.build(report.load_results(d))
        line = next(ln for ln in text.splitlines() if ln.startswith("| Launch → first record, existing"))
        self.assertIn("| 30× |", line)
        self.assertIn("**yes**", line)
        rss = next(ln for ln in text.splitlines() if "1,000,000 × 100 B" in ln)
        self.assertIn("25× †", rss)          # different run ids: marked
        self.assertTrue(rss.rstrip().endswith("| no |"))  # 40 MiB > 32 MiB target
        tput = next(ln for ln in text.splitlines() if ln.startswith("| Throughput on 4 shards"))
        self.assertIn("2.00×", tput)
        idle = next(ln for ln in text.splitlines() if ln.startswith("| Idle daemon CPU"))
        self.assertIn("pending (not built)", idle)
        self.assertTrue(idle.rstrip().endswith("| pending |"))

    def test_bottleneck_naming(self):
        self.assertEqual(name_bottleneck({"daemon": 0.3, "kinesalite": 0.97, "dynalite": 0.05}, 0.2, 2, 1.5)[0],
                         "emulator (kinesalite)")
        self.assertEqual(name_bottleneck({"daemon": 1.9, "kinesalite": 0.5}, 0.2, 2, 1.95)[0], "daemon")
        self.assertEqual(name_bottleneck({"daemon": 0.2, "kinesalite": 0.5}, 0.95, 2, 1.9)[0],
                         "children (busiest processor)")
        self.assertEqual(name_bottleneck({"daemon": 0.5, "kinesalite": 0.5}, 0.5, 2, 1.95)[0], "machine CPU")


class HarnessTest(unittest.TestCase):
    def test_missing_binary_is_not_available(self):
        with tempfile.TemporaryDirectory() as d:
            r = _run(["all", "--daemon", "multilangd", "--sizes", "tiny", "--multilangd-bin", "/nonexistent/multilangd",
                      "--results", d], timeout=120)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            for name in SCENARIOS:
                entry = json.loads(Path(d, f"{name}.json").read_text())["daemons"]["multilangd"]
                self.assertIn(entry["status"], ("not available", "pending"), (name, entry))
            self.assertIn("pending (not built)", Path(d, "BENCHMARKS.md").read_text())

    def test_tiny_smoke(self):
        which = os.environ.get("BENCH_SMOKE_DAEMON", "multilangd")
        specs = {"java": [JavaSpec()], "multilangd": [MultilangdSpec()], "both": [JavaSpec(), MultilangdSpec()]}[which]
        missing = [f"{s.name}: {s.availability()}" for s in specs if s.availability()]
        if missing:
            self.skipTest("; ".join(missing))
        with tempfile.TemporaryDirectory() as d:
            # Java's cold start sleeps a random 1-30 s: only multilangd is smoke-tested cold.
            scenarios = ["start-hot", "steady", "latency", "throughput"] + (["start-cold"] if which == "multilangd" else [])
            r = _run([*scenarios, "--daemon", which, "--sizes", "tiny", "--results", d,
                      "--workdir", str(Path(d, "work"))], timeout=900)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            for name in scenarios:
                for spec in specs:
                    entry = json.loads(Path(d, f"{name}.json").read_text())["daemons"][spec.name]
                    self.assertEqual(entry["status"], "ok", (name, spec.name, entry))


if __name__ == "__main__":
    unittest.main(verbosity=2)
