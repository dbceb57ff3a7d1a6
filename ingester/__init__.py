"""Shared plumbing of the webhook ingester: settings, CLI, migrations, topics, dev stack."""
