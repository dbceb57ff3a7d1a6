"""``ingester console``: the operator console, its own process on ``CONSOLE_HOST``:
``CONSOLE_PORT`` (docs/contract.md §9; how to use it: docs/console.md). ``app`` builds and
serves it, ``auth`` lets operators in, ``pages`` and ``experiments`` show, ``actions``
change, ``sampler`` keeps a short history, ``replays`` runs a replay in the background."""
