"""rc-sync: keeps RevenueCat's reserved attributes (``$email``, ``$displayName``) and our
``environment`` attribute equal to what our tables say (docs/rc-sync.md).

The first internal subscriber: it reads ``ingest.revenuecat.v1`` in a consumer group of its
own and uses only the contract, the plumbing and the consumers' building blocks (database
pool, health server, backoff), never the consumer runtime's transaction-per-batch apply:
its work is an HTTP call, and no call runs inside a database transaction.
"""
