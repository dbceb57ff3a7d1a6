"""The one error type a command raises for a failure it expects.

It lives at the bottom so that any package can raise it; the ``ingester`` command is the only
place that turns it (and the other failures it knows) into the line ``ingester VERB: ...`` and
an exit code. Lower packages prefer returning data or raising their own domain errors.
"""

from __future__ import annotations


class CommandError(Exception):
    """A verb failed in a way it foresaw. The message is the text printed after
    ``ingester VERB:``; ``exit_code`` is 1 for a failure, 2 for bad usage."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
