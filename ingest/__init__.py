"""The HTTP side: verify provider webhooks and publish one CloudEvents record per event."""
