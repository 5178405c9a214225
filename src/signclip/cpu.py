"""CPU threads and precision: a busy neighbour costs a fair share, not a collapse; bf16 where the CPU has it.

* **Wait policy.** :func:`set_wait_policy` (run by the ``signclip`` command before torch loads OpenMP) looks at
  the other processes' load for :data:`SAMPLE_S` and, when they keep at least half a core busy, sets
  ``OMP_WAIT_POLICY=PASSIVE`` (unless it is set already): a thread that finished its share of a parallel
  operation sleeps instead of spinning, leaving the core to the thread the others wait for, ours or another
  process's. Spinning threads are what turns sharing a core into a collapse; on an idle machine the short spin
  is faster (passive waiting cost 1.25x on a 60-step training, benchmarks/RESULTS.md), and a neighbour that
  comes later is met by the thread count, which drops to the free cores (1 thread: nothing spins).
* **Thread count.** :func:`use_threads` ``(n)`` fixes torch's thread count (``--threads``); ``use_threads(None)``
  takes the cores this process may run on (:func:`usable_cores`) less the cores other processes kept busy
  (measured from ``/proc/stat``), and :func:`adapt_threads`, called between training steps and model
  batches, measures again every :data:`ADAPT_EVERY_S` seconds. torch's thread count belongs to the calling
  thread, so each thread that runs a model calls :func:`adapt_threads` itself.
* **Precision.** :func:`resolve_precision`: ``auto`` is ``bf16`` on a CPU with bf16 matrix instructions
  (AVX512-BF16 or AMX), ``fp32`` elsewhere and on GPUs (which keep their path).

Measured in ``benchmarks/cpu_speed.py`` (results in ``benchmarks/RESULTS.md``). Torch is imported inside the
functions that need it.
"""
from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path

ADAPT_EVERY_S = 3.0  # seconds between two measurements of the other processes' load
SAMPLE_S = 0.2  # the first measurement, when the thread count is chosen
PRECISIONS = ("auto", "fp32", "bf16")


BUSY_NEIGHBOUR = 0.5  # cores kept busy by other processes from which OpenMP's threads wait passively
STARTUP: dict[str, float | None] = {}  # the start-up reading of set_wait_policy: "others", "at" (monotonic s)


def wait_policy_for(others: float | None) -> str | None:
    """The OpenMP wait policy for a load of ``others`` busy cores: PASSIVE beside a busy neighbour, else None
    (OpenMP's own spin-then-sleep)."""
    return "PASSIVE" if others is not None and others >= BUSY_NEIGHBOUR else None


def set_wait_policy() -> str | None:
    """Unless ``OMP_WAIT_POLICY`` is set: measure the other processes' load and set it to PASSIVE beside a busy
    neighbour (:func:`wait_policy_for`); returns the policy in force. OpenMP reads it once, when torch is first
    imported, so this must run before that (the ``signclip`` command runs it before each command)."""
    if "OMP_WAIT_POLICY" not in os.environ:
        meter = LoadMeter()
        time.sleep(SAMPLE_S)  # this process sleeps, so all of the load is others'
        STARTUP.update(others=meter.others(), at=time.monotonic())
        policy = wait_policy_for(STARTUP["others"])
        if policy is not None:
            os.environ["OMP_WAIT_POLICY"] = policy
    return os.environ.get("OMP_WAIT_POLICY")


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity), at most a cgroup v2 CPU quota rounded up."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


class LoadMeter:
    """Cores of this process's CPUs kept busy by other processes between two readings (Linux ``/proc/stat``:
    busy time of those CPUs less this process's own CPU time); None where ``/proc/stat`` is not readable."""

    def __init__(self):
        self.cpus = {f"cpu{i}" for i in (os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else ())}
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.last = self.reading()

    def reading(self) -> tuple[float, float, float] | None:
        """(busy seconds of our CPUs, this process's CPU seconds, wall-clock seconds)."""
        try:
            lines = Path("/proc/stat").read_text().splitlines()
        except OSError:
            return None
        busy = 0
        for line in lines:
            name, *fields = line.split()
            if name in self.cpus:  # user nice system idle iowait irq softirq steal ...
                ticks = [int(f) for f in fields[:8]]
                busy += sum(ticks) - ticks[3] - ticks[4]
        return busy / self.tick, time.process_time(), time.monotonic()

    def others(self) -> float | None:
        """Cores busy with other processes since the last call (or since the meter was made)."""
        now, last = self.reading(), self.last
        self.last = now
        if now is None or last is None or now[2] <= last[2]:
            return None
        return max(0.0, ((now[0] - last[0]) - (now[1] - last[1])) / (now[2] - last[2]))


def fair_threads(cores: int, others: float | None) -> int:
    """Threads for ``cores`` usable cores when other processes keep ``others`` of them busy (None: unknown):
    the cores left, rounded, at least 1."""
    return cores if others is None else max(1, min(cores, int(cores - others + 0.5)))


class ThreadPolicy:
    """torch's thread count for this process: fixed, or adapted to the load of other processes."""

    def __init__(self, threads: int | None = None):
        self.fixed = threads
        self.cores = usable_cores()
        self.meter = None if threads else LoadMeter()
        self.lock = threading.Lock()
        self.others: float | None = None
        if self.meter is not None:
            if time.monotonic() - (STARTUP.get("at") or -1e9) < ADAPT_EVERY_S:
                self.others = STARTUP["others"]  # set_wait_policy's reading is recent enough
            else:
                time.sleep(SAMPLE_S)  # a first look at the load (this process sleeps, so all of it is others')
                self.others = self.meter.others()
        self.threads = threads or fair_threads(self.cores, self.others)
        self.checked = time.monotonic()

    def describe(self) -> str:
        """One line for the log: the thread count and why."""
        if self.fixed:
            return f"{self.threads} torch thread(s) (--threads)"
        busy = "" if self.others is None else f", {self.others:.1f} busy with other processes"
        return f"{self.threads} torch thread(s) of {self.cores} core(s){busy}; revisited every {ADAPT_EVERY_S:g} s"

    def adapt(self) -> int:
        """Measure again when :data:`ADAPT_EVERY_S` has passed; set the calling thread's torch thread count."""
        import torch

        if self.meter is not None and time.monotonic() - self.checked >= ADAPT_EVERY_S:
            with self.lock:
                if time.monotonic() - self.checked >= ADAPT_EVERY_S:
                    self.others = self.meter.others()
                    self.threads = fair_threads(self.cores, self.others)
                    self.checked = time.monotonic()
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        return self.threads


POLICY: dict[str, ThreadPolicy] = {}  # "current": the policy in force (none: torch's own choice, untouched)


def use_threads(threads: int | None = None) -> ThreadPolicy:
    """Fix torch's thread count (``threads``) or adapt it to the load (None); applies it to the calling thread
    and to threads that start torch work later, and returns the policy (``describe()`` says what it chose)."""
    if threads is not None and threads < 1:
        raise ValueError(f"threads: expected at least 1, got {threads}")
    POLICY["current"] = ThreadPolicy(threads)
    POLICY["current"].adapt()
    return POLICY["current"]


def adapt_threads() -> int | None:
    """Between training steps and model batches: the calling thread's torch thread count, measured again
    every :data:`ADAPT_EVERY_S` seconds under an adaptive policy (no-op without :func:`use_threads`)."""
    policy = POLICY.get("current")
    return None if policy is None else policy.adapt()


# ---- precision --------------------------------------------------------------------------------------
def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 matrix instructions (AVX512-BF16 or AMX), where bf16 pays on CPU."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's own feature checks
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(precision: str, device: str = "cpu") -> str:
    """``auto`` -> ``bf16`` on a CPU with bf16 instructions (:func:`cpu_has_bf16`), else ``fp32`` (GPUs keep
    fp32 unless asked); ``fp32`` and ``bf16`` as given."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision != "auto":
        return precision
    return "bf16" if str(device).split(":")[0] == "cpu" and cpu_has_bf16() else "fp32"
