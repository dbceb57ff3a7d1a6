"""Scenario 7: no configured secret, no full email address and no phone number in any log
line or metric label of any process a scenario ran."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tests.faults.workload import SECRETS

LOG_DIRS: list[Path] = []  # every scenario's log directory, in run order
EMAIL = re.compile(rb"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
PHONE = re.compile(rb"\+\d{10,15}")


@dataclass(frozen=True, slots=True)
class Leak:
    file: str
    line: int
    what: str
    text: str  # the start of the line, to find the logger that wrote it


def scan(paths: Iterable[Path], pii: Iterable[str] = ()) -> tuple[int, list[Leak]]:
    """(lines read, leaks): secrets by value, any email address or phone number by shape,
    and the workload's own addresses and numbers by value."""
    needles = [(f"secret {name}", value.encode()) for name, value in SECRETS.items()]
    needles += [("pii", value.encode()) for value in pii]
    lines = 0
    leaks: list[Leak] = []
    for path in paths:
        for n, line in enumerate(path.read_bytes().splitlines(), 1):
            lines += 1
            for what, needle in needles:
                if needle in line:
                    leaks.append(Leak(path.name, n, what, _head(line)))
            if EMAIL.search(line):
                leaks.append(Leak(path.name, n, "email address", _head(line)))
            if PHONE.search(line):
                leaks.append(Leak(path.name, n, "phone number", _head(line)))
    return lines, leaks


def files(log_dir: Path) -> list[Path]:
    return sorted(p for p in log_dir.glob("*") if p.is_file())


def _head(line: bytes) -> str:
    return line[:200].decode(errors="replace")
