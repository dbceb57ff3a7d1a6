"""Resident memory and CPU time of a process, sampled while a load runs elsewhere."""

from __future__ import annotations

import bisect
import contextlib
import subprocess
import time
from dataclasses import dataclass, field

import psutil

SAMPLE_INTERVAL_S = 0.05
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # time.perf_counter(): CLOCK_MONOTONIC, comparable across processes on Linux
    rss: int
    cpu_s: float


def sample(proc: psutil.Process) -> Sample:
    times = proc.cpu_times()
    return Sample(time.perf_counter(), proc.memory_info().rss, times.user + times.system)


@dataclass(slots=True)
class Trace:
    samples: list[Sample] = field(default_factory=list)

    @property
    def peak_rss(self) -> int:
        return max((s.rss for s in self.samples), default=0)

    def cpu_share(self, start: float, end: float) -> float | None:
        """CPU seconds used per wall second between the samples nearest ``start`` and
        ``end`` (1.0 = one core busy)."""
        if len(self.samples) < 2 or end <= start:
            return None
        times = [s.at for s in self.samples]
        first = self.samples[min(bisect.bisect_left(times, start), len(times) - 1)]
        last = self.samples[max(bisect.bisect_right(times, end) - 1, 0)]
        if last.at <= first.at:
            return None
        return (last.cpu_s - first.cpu_s) / (last.at - first.at)


def watch(
    load: subprocess.Popen[bytes], processes: dict[str, psutil.Process], timeout: float
) -> dict[str, Trace]:
    """Sample every process in ``processes`` until ``load`` exits (or ``timeout``)."""
    traces = {name: Trace() for name in processes}
    deadline = time.monotonic() + timeout
    while True:
        for name, proc in processes.items():
            with contextlib.suppress(psutil.NoSuchProcess):
                traces[name].samples.append(sample(proc))
        if load.poll() is not None:
            return traces
        if time.monotonic() > deadline:
            raise TimeoutError(f"the load generator ran longer than {timeout:.0f} s")
        time.sleep(SAMPLE_INTERVAL_S)
