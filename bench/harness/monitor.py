"""Samples /proc for the daemon (alone), its descendants, named helper processes and the
whole machine, every `interval` seconds, in a background thread."""
import os
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def read_cpu_s(pid):
    """utime+stime of one process (its own threads only, children excluded), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        rest = f.read().rsplit(b")", 1)[1].split()
    # rest[0] is field 3 (state); utime/stime are fields 14/15; starttime is field 22.
    return (int(rest[11]) + int(rest[12])) / CLK_TCK, int(rest[19])


def read_mem_kib(pid):
    """(VmRSS, VmHWM) in KiB, or (0, 0) for a zombie."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith(b"VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


def read_threads_fds(pid):
    """(threads, open file descriptors) of a process."""
    threads = 0
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"Threads:"):
                threads = int(line.split()[1])
                break
    return threads, len(os.listdir(f"/proc/{pid}/fd"))


def children_of(pid):
    out = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out.extend(int(x) for x in f.read().split())
        except OSError:
            continue
    return out


def machine_cpu():
    """(busy_s, total_s) summed over all CPUs since boot."""
    with open("/proc/stat", "rb") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


class Monitor:
    """Samples every `interval` s. Keys of each sample: t (epoch), daemon_cpu, daemon_rss_kib,
    daemon_hwm_kib, children_cpu (cumulative over every descendant ever seen, exited ones keep
    their last value), children_rss_kib (live ones), children_n, machine_busy (cumulative busy
    CPU-seconds of the machine), and `<name>_cpu` for each extra process."""

    def __init__(self, daemon_pid, extra=None, interval=0.2):
        self.daemon_pid = daemon_pid
        self.extra = dict(extra or {})
        self.interval = interval
        self.samples = []
        self._child_cpu = {}  # (pid, starttime) -> last cpu seconds
        self._child_hwm = {}  # (pid, starttime) -> peak rss kib
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="monitor", daemon=True)
        self.daemon_gone = False

    def start(self):
        self.sample()
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()

    def _run(self):
        while not self._stop.wait(self.interval):
            self.sample()

    def _descendants(self):
        seen, todo = [], children_of(self.daemon_pid)
        while todo:
            pid = todo.pop()
            seen.append(pid)
            todo.extend(children_of(pid))
        return seen

    def sample(self):
        t = time.time()
        s = {"t": t}
        try:
            s["daemon_cpu"], _ = read_cpu_s(self.daemon_pid)
            s["daemon_rss_kib"], s["daemon_hwm_kib"] = read_mem_kib(self.daemon_pid)
            s["daemon_threads"], s["daemon_fds"] = read_threads_fds(self.daemon_pid)
        except (OSError, IndexError, ValueError):
            self.daemon_gone = True
            if not self.samples:
                return
            last = self.samples[-1]
            s["daemon_cpu"], s["daemon_rss_kib"], s["daemon_hwm_kib"] = (
                last["daemon_cpu"], 0, last["daemon_hwm_kib"])
        rss_total, live = 0, 0
        for pid in self._descendants():
            try:
                cpu, start = read_cpu_s(pid)
                rss, hwm = read_mem_kib(pid)
            except (OSError, IndexError, ValueError):
                continue
            key = (pid, start)
            self._child_cpu[key] = cpu
            self._child_hwm[key] = max(self._child_hwm.get(key, 0), hwm)
            rss_total += rss
            live += 1
        s["children_detail"] = {f"{k[0]}": v for k, v in self._child_cpu.items()}
        s["children_cpu"] = sum(self._child_cpu.values())
        s["children_max_cpu"] = max(self._child_cpu.values(), default=0.0)
        s["children_rss_kib"] = rss_total
        s["children_n"] = live
        s["children_ever"] = len(self._child_cpu)
        for name, pid in self.extra.items():
            try:
                s[f"{name}_cpu"], _ = read_cpu_s(pid)
            except (OSError, IndexError, ValueError):
                s[f"{name}_cpu"] = self.samples[-1].get(f"{name}_cpu", 0.0) if self.samples else 0.0
        s["machine_busy"], _ = machine_cpu()
        self.samples.append(s)

    # ---- queries -------------------------------------------------------------------------
    def at(self, key, t):
        """Value of the cumulative `key` at epoch time t, linearly interpolated between samples."""
        prev = None
        for s in self.samples:
            if s["t"] >= t:
                if prev is None or s["t"] == prev["t"]:
                    return s.get(key, 0.0)
                f = (t - prev["t"]) / (s["t"] - prev["t"])
                return prev.get(key, 0.0) + f * (s.get(key, 0.0) - prev.get(key, 0.0))
            prev = s
        return prev.get(key, 0.0) if prev else 0.0

    def delta(self, key, t0, t1):
        return self.at(key, t1) - self.at(key, t0)

    def peak(self, key):
        return max((s.get(key, 0) for s in self.samples), default=0)

    def last(self, key):
        return self.samples[-1].get(key, 0) if self.samples else 0

    def busiest_child(self, t0, t1):
        """(pid, cpu seconds) of the descendant that used the most CPU between t0 and t1."""
        a, b = self._sample_at(t0).get("children_detail", {}), self._sample_at(t1).get("children_detail", {})
        best = (None, 0.0)
        for pid, cpu in b.items():
            d = cpu - a.get(pid, 0.0)
            if d > best[1]:
                best = (pid, d)
        return best

    def _sample_at(self, t):
        best = self.samples[0]
        for s in self.samples:
            if s["t"] <= t:
                best = s
            else:
                break
        return best
