"""The `ingester` command: the CLI verbs and `ingester dev`, composing ingest and consumers."""
