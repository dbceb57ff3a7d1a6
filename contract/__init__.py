"""The contract on the topics: what ingest writes and consumers read (record envelope, items)."""
