"""The daemons under test, their properties files, and one monitored daemon run."""
import os
import shlex
import signal
import time
from pathlib import Path

from . import testbed
from .monitor import Monitor, read_cpu_s
from .testbed import BENCH, REPO, BenchError, Proc

JAVA_MAIN = "software.amazon.kinesis.multilang.MultiLangDaemon"


class NotAvailable(Exception):
    """The daemon cannot be run here (binary or jars missing)."""


class DaemonSpec:
    """How to start one daemon. `argv(props)` is exec'd directly (no shell, no wrapper), so the
    PID the harness gets back is the daemon itself."""

    def __init__(self, name):
        self.name = name

    def availability(self):
        """None when runnable, else the reason it is not."""
        raise NotImplementedError

    def argv(self, props):
        raise NotImplementedError

    def env(self, kinesis_backend):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_REGION="us-east-1",
                   AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
        return env

    def kinesis_endpoint(self, emus):
        return emus["kinesis"].endpoint

    def version(self):
        return None

    def command_text(self, props="P"):
        return " ".join(shlex.quote(str(a)) for a in self.argv(props))


class JavaSpec(DaemonSpec):
    """Reference KCL MultiLangDaemon 2.5.8 (jars from the test bed's amazon_kclpy)."""

    def __init__(self, java_opts=()):
        super().__init__("java")
        self.java_opts = list(java_opts)
        self.jars = testbed.java_jars_dir()

    def availability(self):
        if self.jars is None:
            return f"Java daemon jars not found under {testbed.testbed_dir()}/venv(-java)/lib/python3*/site-packages/amazon_kclpy/jars"
        if not any(os.access(os.path.join(p, "java"), os.X_OK) for p in os.environ.get("PATH", "").split(":")):
            return "no `java` on PATH"
        return None

    def argv(self, props):
        return ["java", *self.java_opts, "-cp", f"{self.jars}/*", JAVA_MAIN, "--properties-file", str(props)]

    def env(self, kinesis_backend):
        env = super().env(kinesis_backend)
        if kinesis_backend == "kinesalite":
            # kinesalite's CBOR timestamps break the Java SDK v2 CBOR parser: use JSON.
            env["CBOR_ENABLED"] = "false"
        return env

    def kinesis_endpoint(self, emus):
        # The Java Kinesis client speaks h2c only; kinesalite needs the h2c front.
        return emus["h2c"].endpoint if "h2c" in emus else emus["kinesis"].endpoint

    def version(self):
        jars = sorted(p.name for p in self.jars.glob("amazon-kinesis-client-multilang-*.jar")) if self.jars else []
        java = testbed.tool_version(["java", "-version"])
        return f"{jars[0][:-4] if jars else 'amazon-kinesis-client-multilang ?'} on {java}"


class Java3Spec(JavaSpec):
    """Reference KCL MultiLangDaemon 3.1.3 (jars of kclpy-ext 3.1.3.post4 in `venv-java3`): the
    current Java line, whose defaults are enhanced fan-out and the KCL 3.x lease protocol."""

    def __init__(self, java_opts=()):
        super().__init__(java_opts)
        self.name = "java3"
        self.jars = testbed.java3_jars_dir()

    def availability(self):
        if self.jars is None:
            return f"Java 3.1.3 daemon jars not found under {testbed.testbed_dir()}/venv-java3"
        return super().availability()


class MultilangdSpec(DaemonSpec):
    """multilangd, `<repo>/target/release/multilangd` unless overridden."""

    def __init__(self, binary=None):
        super().__init__("multilangd")
        self.binary = Path(binary or os.environ.get("MULTILANGD_BIN") or REPO / "target" / "release" / "multilangd")

    def availability(self):
        if not self.binary.is_file() or not os.access(self.binary, os.X_OK):
            return f"binary not found: {self.binary} (build it with `cargo build --release`)"
        return None

    def argv(self, props):
        return [str(self.binary), "--properties-file", str(props)]

    def version(self):
        v = testbed.tool_version([str(self.binary), "--version"])
        return f"{v} ({self.binary})" if v else str(self.binary)


def make_specs(which, multilangd_bin=None, java_opts=()):
    names = ["java", "multilangd"] if which == "both" else [which]
    return [JavaSpec(java_opts) if n == "java" else MultilangdSpec(multilangd_bin) for n in names]


def write_properties(path, *, app, stream, kinesis_endpoint, ddb_endpoint, processor_out, mode="count",
                     initial_position="TRIM_HORIZON", extra=None):
    """The properties file both daemons are given (only the Kinesis endpoint can differ: Java
    goes through the h2c proxy on kinesalite)."""
    python = testbed.venv_python()
    executable = f"{python} {BENCH / 'processors' / 'bench_processor.py'} --out {processor_out} --mode {mode}"
    props = {
        "executableName": executable,
        "streamName": stream,
        "applicationName": app,
        "AWSCredentialsProvider": "DefaultAWSCredentialsProviderChain",
        "processingLanguage": "python/3.11",
        "initialPositionInStream": initial_position,
        "regionName": "us-east-1",
        "kinesisEndpoint": kinesis_endpoint,
        "dynamoDBEndpoint": ddb_endpoint,
        "metricsLevel": "NONE",
        "retrievalMode": "POLLING",
        "maxRecords": "10000",
        "idleTimeBetweenReadsInMillis": "200",
        "shardSyncIntervalMillis": "1000",
        "failoverTimeMillis": "10000",
        "parentShardPollIntervalMillis": "1000",
        # The 2.x lease protocol on dynalite (which cannot create the 3.x owner index), as the
        # Java 2.5.8 daemon runs it; Java ignores the key. The fan-out scenario sets 3.x.
        "clientVersionConfig": "CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X",
    }
    props.update(extra or {})
    with open(path, "w") as f:
        f.write("# generated by bench/run.py\n")
        for k, v in props.items():
            if v is None:  # a key removed by `extra`
                continue
            f.write(f"{k} = {v}\n")
    return props


class DaemonFailed(BenchError):
    pass


class DaemonRun:
    """One monitored run of a daemon. Use as a context manager; leaving it stops the daemon
    (SIGTERM, then SIGKILL of its process group) and waits for its children."""

    def __init__(self, spec, props, workdir, kinesis_backend, extra_pids=None, interval=0.2):
        self.spec = spec
        self.props = props
        self.workdir = Path(workdir)
        self.kinesis_backend = kinesis_backend
        self.extra_pids = extra_pids or {}
        self.interval = interval
        self.proc = None
        self.monitor = None
        self.launch_ts = None
        self.exit_code = None
        self.stop_s = None
        self.loadavg_before = None
        self.loadavg_after = None

    def __enter__(self):
        self.loadavg_before = testbed.loadavg()
        argv = self.spec.argv(self.props)
        env = self.spec.env(self.kinesis_backend)
        self.launch_ts = time.time()
        self.proc = Proc(self.spec.name, argv, env=env, log_path=self.workdir / "daemon.log")
        self.monitor = Monitor(self.proc.pid, self.extra_pids, self.interval).start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def check_alive(self):
        if not self.proc.alive():
            rc = self.proc.popen.returncode
            raise DaemonFailed(f"{self.spec.name} exited with status {rc} after "
                               f"{time.time() - self.launch_ts:.2f} s; last log lines:\n{self.proc.log_tail(15)}")

    def wait_for(self, predicate, timeout, what):
        """Polls predicate() every 20 ms until it returns a truthy value, the daemon dies or
        `timeout` s pass."""
        deadline = time.monotonic() + timeout
        while True:
            v = predicate()
            if v:
                return v
            self.check_alive()
            if time.monotonic() > deadline:
                raise DaemonFailed(f"{self.spec.name}: timed out after {timeout} s waiting for {what}; "
                                   f"last log lines:\n{self.proc.log_tail(15)}")
            time.sleep(0.02)

    def stop(self):
        if self.proc is None or self.exit_code is not None:
            return
        if self.monitor:
            self.monitor.stop()
        t0 = time.monotonic()
        if self.proc.alive():
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        rc = self.proc.wait(30)
        self.stop_s = time.monotonic() - t0
        # Children normally exit on EOF once the daemon is gone; give them a moment, then kill
        # whatever is left in the daemon's process group (by its id).
        deadline = time.monotonic() + 5
        while (self.proc.group_members() or self._leftover_children()) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.proc.kill_group()
        for pid in self._leftover_children():  # children the daemon put in other process groups
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if rc is None:
            rc = self.proc.wait(5)
        testbed._LIVE.pop(self.proc.pid, None)
        self.exit_code = rc if rc is not None else "killed"
        self.loadavg_after = testbed.loadavg()

    def _leftover_children(self):
        """Descendants seen by the monitor that are still running (same PID and start time)."""
        out = []
        for pid, start in list(self.monitor._child_cpu) if self.monitor else []:
            try:
                _, now_start = read_cpu_s(pid)
            except (OSError, IndexError, ValueError):
                continue
            if now_start == start and not _is_zombie(pid):
                out.append(pid)
        return out

    def meta(self):
        props = f"<scratch>/{Path(self.props).parent.name}/{Path(self.props).name}"
        return {"launch_epoch": self.launch_ts, "command": self.spec.command_text(props),
                "exit_code": self.exit_code, "stop_s": round(self.stop_s or 0, 2),
                "loadavg_before": self.loadavg_before, "loadavg_after": self.loadavg_after}


def _is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except OSError:
        return True


# ---- processor output --------------------------------------------------------------------

def first_record_ts(out_dir):
    """Earliest first-record time over all shards, or None."""
    times = []
    for p in Path(out_dir).glob("first-*"):
        if ".tmp" in p.name:
            continue
        try:
            times.append(float(p.read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            continue
    return min(times) if times else None


def first_record_by_shard(out_dir):
    out = {}
    for p in Path(out_dir).glob("first-*"):
        if ".tmp" in p.name:
            continue
        try:
            out[p.name[len("first-"):]] = float(p.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return out


class ProcessorLogs:
    """Incrementally reads the processors' shard-*.log files."""

    def __init__(self, out_dir):
        self.out_dir = Path(out_dir)
        self.pos = {}
        self.partial = {}
        self.batches = []    # (recv_ts, n)
        self.records = []    # (recv_ts, send_ts) in latency mode
        self.total = 0

    def poll(self):
        for p in self.out_dir.glob("shard-*.log"):
            key = p.name
            try:
                with open(p, "rb") as f:
                    f.seek(self.pos.get(key, 0))
                    data = f.read()
                    self.pos[key] = f.tell()
            except OSError:
                continue
            data = self.partial.pop(key, b"") + data
            lines = data.split(b"\n")
            if lines[-1]:
                self.partial[key] = lines[-1]
            for line in lines[:-1]:
                parts = line.split()
                if len(parts) != 3:
                    continue
                if parts[0] == b"b":
                    n = int(parts[2])
                    self.batches.append((float(parts[1]), n))
                    self.total += n
                elif parts[0] == b"r":
                    try:
                        self.records.append((float(parts[1]), float(parts[2])))
                    except ValueError:
                        pass
        return self.total
