"""Print or refill the settings tables of the docs, rendered from the declarations in
``core/settings.py``: ``python -m ingester.settings_tables --markdown [group ...]`` prints
them, ``--write FILE ...`` refills the marked tables of those files (``make docs`` does it for
README.md, docs/contract.md and docs/consumers.md). ``tests/unit/test_settings_docs.py``
keeps the docs equal to the declarations.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from core.settings import ConfigError, fill_settings_tables, settings_table

USAGE = "usage: python -m ingester.settings_tables --markdown [group ...] | --write FILE ..."


def main(argv: Sequence[str]) -> int:
    try:
        if argv[:1] == ["--markdown"]:
            print(settings_table(*argv[1:]))
            return 0
        if argv[:1] == ["--write"] and argv[1:]:
            for path in map(Path, argv[1:]):
                path.write_text(fill_settings_tables(path.read_text()))
            print(f"settings tables written to {', '.join(argv[1:])}")
            return 0
    except (ConfigError, OSError) as exc:
        print(f"settings_tables: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
