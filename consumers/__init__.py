"""The consumer runtime: Kafka batches applied to PostgreSQL exactly once in effect."""
