"""The folder a root run keeps PostgreSQL in is used only when it is ours and closed to
others (the temp dir is shared: anyone may have created that name first)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core import pghome


@pytest.fixture
def parent() -> Iterator[Path]:
    """A folder others may traverse, as the system temp dir is (pytest's tmp_path is not)."""
    path = Path(tempfile.mkdtemp(prefix="pghome-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def absent(base: Path) -> None:
    pass


def with_mode(mode: int) -> Callable[[Path], None]:
    def make(base: Path) -> None:
        base.mkdir()
        base.chmod(mode)

    return make


def a_symlink(base: Path) -> None:
    target = base.with_name("elsewhere")
    target.mkdir(mode=0o755)
    base.symlink_to(target)


def a_file(base: Path) -> None:
    base.write_text("")


@pytest.mark.parametrize(
    ("setup", "accepted"),
    [
        pytest.param(absent, True, id="created 0755"),
        pytest.param(with_mode(0o755), True, id="ours, 0755"),
        pytest.param(with_mode(0o775), False, id="group-writable"),
        pytest.param(with_mode(0o757), False, id="world-writable"),
        pytest.param(with_mode(0o700), False, id="closed to the server user"),
        pytest.param(a_symlink, False, id="a symlink planted in its place"),
        pytest.param(a_file, False, id="a file in its place"),
    ],
)
def test_base_is_used_only_when_ours_and_closed(
    parent: Path, setup: Callable[[Path], None], accepted: bool
) -> None:
    base = parent / "ingester-pg-test"
    setup(base)

    if accepted:
        pghome._own_base(base)
        assert base.stat().st_mode & 0o777 == 0o755
        assert base.stat().st_uid == os.geteuid()
    else:
        with pytest.raises(pghome.HomeError, match="remove it"):
            pghome._own_base(base)


def test_base_under_a_private_folder_is_refused_without_changing_it(parent: Path) -> None:
    private = parent / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)

    with pytest.raises(pghome.HomeError, match="may not be traversed by other users"):
        pghome._own_base(private / "ingester-pg-test")
    assert private.stat().st_mode & 0o777 == 0o700
    assert not (private / "ingester-pg-test").exists()


def test_locate_as_a_regular_user_uses_the_wheel_and_the_path_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)

    home = pghome.locate(tmp_path / "pgdata")

    assert home.user is None and home.link is None
    assert home.data_dir == (tmp_path / "pgdata").resolve()
    assert home.bin_dir == pghome.wheel_install() / "bin"
