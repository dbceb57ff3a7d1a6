"""Child processes and temporary directories, always torn down, even on Ctrl-C.

Every child runs in its own session (process group), so the terminal's Ctrl-C reaches only
the benchmark, which then stops its children in reverse start order: SIGTERM to the group
it started, SIGKILL after a deadline.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent
# The only variables a child inherits: a variable such as DATABASE_URL or ENVIRONMENT in the
# caller's shell must not change what is measured.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "XDG_RUNTIME_DIR")


def child_env(values: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _INHERITED}
    env["PYTHONPATH"] = str(REPO)  # bench/ itself is not an installed package
    env.update(values)
    return env


def python() -> str:
    return sys.executable


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int | None:
    """SIGTERM the process group this benchmark started, SIGKILL after ``timeout``."""
    if proc.poll() is not None:
        return proc.returncode
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait(timeout=10)


class Cleanup:
    """LIFO teardown of everything the run started; :meth:`close` is idempotent."""

    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], object]]] = []

    def add(self, what: str, step: Callable[[], object]) -> None:
        self._steps.append((what, step))

    def temp_dir(self, prefix: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=prefix))
        self.add(f"remove {path}", lambda: shutil.rmtree(path, ignore_errors=True))
        return path

    def spawn(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        log: Path | None = None,
        stdout: int | IO[bytes] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a child in its own session; its stderr (and stdout unless given) go to
        ``log``."""
        sink = log.open("ab") if log is not None else subprocess.DEVNULL
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdout=stdout if stdout is not None else sink,
            stderr=sink,
            start_new_session=True,
        )
        if not isinstance(sink, int):
            sink.close()  # the child holds its own descriptor
        self.add(f"stop pid {proc.pid}", lambda: stop_process(proc))
        return proc

    def close(self) -> None:
        # Ctrl-C during teardown must not leave the remaining children running.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            while self._steps:
                what, step = self._steps.pop()
                try:
                    step()
                except Exception as exc:  # teardown goes on whatever one step did
                    print(f"bench: cleanup step {what!r} failed: {exc}", file=sys.stderr)
        finally:
            signal.signal(signal.SIGINT, previous)


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(interval)
