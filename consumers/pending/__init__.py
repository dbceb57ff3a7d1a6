"""Pending events: those whose target row does not exist yet, parked in ``ingest_pending``
and retried until it does (docs/consumers.md, "Pending and skipped").

``waits`` names the keys a parked event waits for, ``store`` the statements of the pending
table and its wake-ups, ``policy`` the limits from the settings, ``retry`` a retry pass and
``task`` the consumers' periodic pass beside the runner.
"""
