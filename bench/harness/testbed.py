"""Test bed discovery, process management (by PID only), emulators and proxies."""
import glob
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"


class BenchError(Exception):
    """A benchmark step failed; the message says which and why."""


def testbed_dir():
    """`$MULTILANGD_TESTBED`, else `<repo>/.testbed`."""
    return Path(os.environ.get("MULTILANGD_TESTBED") or REPO / ".testbed")


def venv_dir(tb=None):
    """The test bed venv with boto3 + amazon_kclpy: `venv-java` (final layout) or `venv`."""
    tb = tb or testbed_dir()
    for name in ("venv-java", "venv"):
        if (tb / name / "bin" / "python").exists():
            return tb / name
    raise BenchError(f"no Python venv under {tb} (looked for venv-java/ and venv/)")


def venv_python(tb=None):
    return venv_dir(tb) / "bin" / "python"


def java_jars_dir(tb=None):
    """Directory holding the Java MultiLangDaemon 2.5.8 jars (amazon_kclpy/jars in a venv)."""
    tb = tb or testbed_dir()
    for name in ("venv-java", "venv"):
        for d in sorted(glob.glob(str(tb / name / "lib" / "python3*" / "site-packages" / "amazon_kclpy" / "jars"))):
            if glob.glob(os.path.join(d, "*.jar")):
                return Path(d)
    return None


def java3_jars_dir(tb=None):
    """Directory holding the Java MultiLangDaemon 3.1.3 jars (kclpy-ext in `venv-java3`)."""
    tb = tb or testbed_dir()
    for d in sorted(glob.glob(str(tb / "venv-java3" / "lib" / "python3*" / "site-packages" / "amazon_kclpy" / "jars"))):
        if glob.glob(os.path.join(d, "amazon-kinesis-client-multilang-3.*.jar")):
            return Path(d)
    return None


def node_modules(tb=None):
    d = (tb or testbed_dir()) / "emu" / "node_modules"
    if not d.is_dir():
        raise BenchError(f"test bed not installed: {d} is missing")
    return d


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers_http(port, timeout=2.0):
    """True when something on 127.0.0.1:port answers an HTTP/1.1 request with a status line."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3) as s:
            s.settimeout(timeout)
            body = b"{}"
            s.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/x-amz-json-1.1\r\n"
                      b"X-Amz-Target: Kinesis_20131202.ListStreams\r\nContent-Length: %d\r\n"
                      b"Connection: close\r\n\r\n%s" % (port, len(body), body))
            head = s.recv(12)
            return head.startswith(b"HTTP/")
    except OSError:
        return False


# Every process this harness starts, so that an interrupted run still stops them (by PID).
_LIVE = {}


class Proc:
    """A process started by the harness in its own session (process group id == its PID).

    `stop()` signals the PID, waits, then SIGKILLs the process group it leads (same id), which
    also catches children the process left behind. Nothing is ever killed by name."""

    def __init__(self, name, argv, cwd=None, env=None, log_path=None, stdout=None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path) if log_path else None
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL
        try:
            self.popen = subprocess.Popen(
                self.argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                stdout=stdout if stdout is not None else out, stderr=out, start_new_session=True)
        except OSError as e:
            raise BenchError(f"cannot start {name} ({self.argv[0]}): {e}") from e
        finally:
            if log_path:
                out.close()
        self.pid = self.popen.pid
        _LIVE[self.pid] = self

    def alive(self):
        return self.popen.poll() is None

    def wait(self, timeout):
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Signal the process, wait up to `timeout`, then SIGKILL its process group. Returns the
        exit status (or None if it had to be killed)."""
        rc = self.popen.poll()
        if rc is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            rc = self.wait(timeout)
        self.kill_group()
        if rc is None:
            rc = self.wait(5)
        _LIVE.pop(self.pid, None)
        return rc

    def kill_group(self):
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def group_members(self):
        """PIDs still in this process's group (children it left behind)."""
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    rest = f.read().rsplit(b")", 1)[1].split()
                if int(rest[2]) == self.pid:  # field 5: pgrp
                    out.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
        return out

    def log_tail(self, lines=20):
        if not self.log_path or not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 20000))
            text = f.read().decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])


def stop_all():
    """Stops every process still registered (used on exit and on interruption)."""
    for proc in list(_LIVE.values()):
        proc.stop(timeout=3)


def _wait_ready(proc, port, deadline_s, check=None):
    deadline = time.monotonic() + deadline_s
    check = check or (lambda: answers_http(port))
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(f"{proc.name} exited during start-up (rc={proc.popen.returncode}):\n{proc.log_tail()}")
        if check():
            return
        time.sleep(0.05)
    proc.stop()
    raise BenchError(f"{proc.name} did not answer on port {port} within {deadline_s} s:\n{proc.log_tail()}")


class Service:
    """A started emulator or proxy: name, port, endpoint, Proc."""

    def __init__(self, name, port, proc):
        self.name = name
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self.proc = proc

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        self.proc.stop(timeout=5)


def start_dynalite(workdir):
    port = free_port()
    argv = ["node", node_modules() / "dynalite" / "cli.js", "--host", "127.0.0.1", "--port", port,
            "--createTableMs", 0, "--deleteTableMs", 0, "--updateTableMs", 0]
    proc = Proc("dynalite", argv, log_path=Path(workdir) / f"dynalite-{port}.log")
    _wait_ready(proc, port, 30)
    return Service("dynalite", port, proc)


def start_kinesis_local(workdir):
    port, tls = free_port(), free_port()
    env = dict(os.environ, KINESIS_MOCK_PLAIN_PORT=str(port), KINESIS_MOCK_TLS_PORT=str(tls),
               CREATE_STREAM_DURATION="100ms", DELETE_STREAM_DURATION="100ms",
               REGISTER_STREAM_CONSUMER_DURATION="100ms", START_STREAM_ENCRYPTION_DURATION="100ms",
               STOP_STREAM_ENCRYPTION_DURATION="100ms", DEREGISTER_STREAM_CONSUMER_DURATION="100ms",
               MERGE_SHARDS_DURATION="100ms", SPLIT_SHARD_DURATION="100ms",
               UPDATE_SHARD_COUNT_DURATION="100ms", SHARD_LIMIT="200", LOG_LEVEL="WARN")
    d = node_modules() / "kinesis-local"
    proc = Proc("kinesis-local", ["node", "main.js"], cwd=d, env=env,
                log_path=Path(workdir) / f"kinesis-local-{port}.log")
    _wait_ready(proc, port, 60)
    return Service("kinesis-local", port, proc)


def start_moto(workdir):
    """moto server (DynamoDB for the KCL 3.x daemon, which dynalite cannot host: it rejects the
    lease table's on-demand GSI)."""
    server = testbed_dir() / "venv-moto" / "bin" / "moto_server"
    if not server.is_file():
        raise BenchError(f"test bed part venv-moto not installed: {server} is missing")
    port = free_port()
    proc = Proc("moto", [server, "-H", "127.0.0.1", "-p", port], log_path=Path(workdir) / f"moto-{port}.log")
    _wait_ready(proc, port, 60)
    return Service("moto", port, proc)


def start_kinesalite(workdir):
    port = free_port()
    script = ("require('kinesalite')({createStreamMs:50,deleteStreamMs:50,updateStreamMs:50,shardLimit:200})"
              f".listen({port},'127.0.0.1')")
    proc = Proc("kinesalite", ["node", "-e", script], cwd=node_modules().parent,
                log_path=Path(workdir) / f"kinesalite-{port}.log")
    _wait_ready(proc, port, 30)
    return Service("kinesalite", port, proc)


def _start_node_proxy(name, script, upstream, workdir):
    port = free_port()
    proc = Proc(name, ["node", BENCH / script, port, upstream.port],
                log_path=Path(workdir) / f"{name}-{port}.log")
    _wait_ready(proc, port, 15)
    return Service(name, port, proc)


def start_h2c_proxy(upstream, workdir):
    """h2c front for kinesalite (the Java Kinesis client only speaks HTTP/2 to http:// URLs)."""
    return _start_node_proxy("h2c-proxy", "h2c-proxy.js", upstream, workdir)


def start_ddb_counter(upstream, workdir):
    """Counting HTTP/1.1 proxy in front of dynalite (GET /__bench/counts)."""
    return _start_node_proxy("ddb-count-proxy", "ddb-count-proxy.js", upstream, workdir)


def ddb_counts(counter):
    import json
    import urllib.request
    with urllib.request.urlopen(f"{counter.endpoint}/__bench/counts", timeout=5) as r:
        return json.loads(r.read())


def machine_info():
    info = {"nproc": os.cpu_count(), "kernel": os.uname().release, "python": sys.version.split()[0]}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["mem_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def loadavg():
    return [round(x, 2) for x in os.getloadavg()]


def tool_version(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        text = (r.stdout + r.stderr).strip().splitlines()
        return text[0] if text else None
    except (OSError, subprocess.TimeoutExpired):
        return None
