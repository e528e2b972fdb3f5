"""Memory of processes: peak RSS of this process, and of every process in a tree polled while work runs.

Peak RSS comes from the kernel (``VmHWM`` in /proc/<pid>/status), so short spikes between two polls are not
missed as long as the process is still alive at the next poll. For the daemon path the run workers are
grandchildren of the daemon (daemon -> code server -> ``dagster api execute_run``), so the whole tree is walked.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

MIB = 1024 * 1024


def _status_kib(pid: int | str, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def peak_rss_mib(pid: int | str = "self") -> float | None:
    """Highest resident set size the process has had so far (MiB)."""
    kib = _status_kib(pid, "VmHWM")
    return None if kib is None else kib / 1024


def rss_mib(pid: int | str = "self") -> float | None:
    kib = _status_kib(pid, "VmRSS")
    return None if kib is None else kib / 1024


def system_busy_s() -> float:
    """CPU-seconds the whole machine has spent busy since boot (all cores), from /proc/stat.

    Compared with our own processes' CPU time over the same window it shows how much other work (other users'
    tests on a shared machine) competed with the benchmark.
    """
    import os

    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields]
    busy = sum(values) - values[3] - (values[4] if len(values) > 4 else 0)  # minus idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """User + system CPU-seconds of this process so far."""
    import os

    t = os.times()
    return t.user + t.system


def classify(cmdline: list[str]) -> str:
    """Which part of the Dagster deployment a process is, from its command line."""
    text = " ".join(cmdline)
    if "resource_tracker" in text:
        return "other"
    # The code server starts each run in a multiprocessing "spawn" child (dagster._grpc.server), so a run worker
    # shows up as `python -c "from multiprocessing.spawn import spawn_main; ..." --multiprocessing-fork`.
    if "celery" in text:  # a warm run worker (the main Celery process and its pool processes share this line)
        return "run_worker"
    if "spawn_main" in text or "execute_run" in text or "execute_step" in text or "resume_run" in text:
        return "run_worker"
    if "grpc" in text or "code-server" in text or "code_server" in text:
        return "code_server"
    if "dagster-daemon" in text or "dagster_daemon" in text or " daemon" in text:
        return "daemon"
    return "other"


@dataclass
class TreeSample:
    pid: int
    role: str
    cmdline: str
    started: float
    peak_rss_mib: float = 0.0
    last_seen: float = 0.0
    cpu_first: float = 0.0  # CPU-seconds at the start of the measured window (or when first seen)
    cpu_last: float = 0.0


@dataclass
class TreeMonitor:
    """Polls a process and all its descendants; remembers each one's peak RSS and role."""

    root_pid: int
    extra_roots: list[int] = field(default_factory=list)  # more trees to watch (e.g. the Celery run workers)
    interval: float = 0.2
    processes: dict[int, TreeSample] = field(default_factory=dict)
    peak_total_mib: float = 0.0
    _window_start: float = field(default_factory=time.time)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def poll(self) -> None:
        procs = []
        for pid in (self.root_pid, *self.extra_roots):
            try:
                root = psutil.Process(pid)
                procs += [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
        if not procs:
            return
        now = time.monotonic()
        total = 0.0
        for proc in procs:
            try:
                sample = self.processes.get(proc.pid)
                if sample is None:
                    sample = TreeSample(pid=proc.pid, role="other", cmdline="", started=proc.create_time())
                    self.processes[proc.pid] = sample
                if sample.role != "run_worker":
                    # Re-read: a child caught between fork and exec still shows its parent's command line.
                    cmd = proc.cmdline()
                    sample.role, sample.cmdline = classify(cmd), " ".join(cmd)[:300]
                times = proc.cpu_times()
                cpu = times.user + times.system
                if sample.last_seen == 0.0:
                    sample.cpu_first = 0.0 if sample.started >= self._window_start else cpu
                sample.cpu_last = cpu
                peak = peak_rss_mib(proc.pid)
                current = rss_mib(proc.pid) or 0.0
                total += current
                if peak is not None:
                    sample.peak_rss_mib = max(sample.peak_rss_mib, peak)
                sample.last_seen = now
            except psutil.Error:
                continue
        self.peak_total_mib = max(self.peak_total_mib, total)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval)

    def start(self) -> TreeMonitor:
        self._thread = threading.Thread(target=self._loop, name="rss-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.poll()

    def summary(self, since: float | None = None) -> dict[str, object]:
        """Peak RSS per role (max over processes), how many processes of each role were seen."""
        roles: dict[str, dict[str, float]] = {}
        for sample in self.processes.values():
            if since is not None and sample.last_seen and sample.last_seen < since:
                continue
            role = roles.setdefault(sample.role, {"processes": 0, "peak_rss_mib": 0.0})
            role["processes"] += 1
            role["peak_rss_mib"] = round(max(role["peak_rss_mib"], sample.peak_rss_mib), 1)
        cpu = sum(s.cpu_last - s.cpu_first for s in self.processes.values()
                  if since is None or not s.last_seen or s.last_seen >= since)
        listing = [{"pid": s.pid, "role": s.role, "peak_rss_mib": round(s.peak_rss_mib, 1),
                    "cpu_s": round(s.cpu_last - s.cpu_first, 2), "cmdline": s.cmdline[:160]}
                   for s in self.processes.values() if s.role != "other" or s.peak_rss_mib > 50]
        return {"roles": roles, "peak_tree_rss_mib": round(self.peak_total_mib, 1), "cpu_s": round(cpu, 2),
                "by_role_cpu_s": {role: round(sum(s.cpu_last - s.cpu_first for s in self.processes.values()
                                                  if s.role == role), 2) for role in roles},
                "processes": listing}

    def reset(self) -> None:
        """Start a new measured window: peaks and CPU counted from now (a long-lived process keeps its VmHWM)."""
        self.peak_total_mib = 0.0
        self._window_start = time.time()
        for sample in self.processes.values():
            sample.peak_rss_mib = 0.0
            sample.cpu_first = sample.cpu_last
