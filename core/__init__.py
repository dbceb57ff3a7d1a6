"""Shared plumbing every side stands on: settings, topics, Kafka clients, logs, migrations
and the embedded dev/test servers."""
