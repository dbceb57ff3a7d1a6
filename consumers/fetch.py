"""One bounded fetch from a group consumer, for every loop that reads the topics (the
runner, rc-sync): up to ``max_records`` records, waiting up to ``wait_ms`` for the first,
the whole fetch bounded by ``io_timeout_s`` beyond that wait."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import errors as kafka_errors

from consumers.backoff import Backoff
from consumers.classify import Failure, classify
from consumers.decode import RawRecord
from consumers.policies import FetchPolicy

log = logging.getLogger("consumers.runner")


async def fetch_batch(
    consumer: Any, policy: FetchPolicy, io_timeout_s: float, backoff: Backoff
) -> list[RawRecord]:
    """The records of one fetch; [] after a broker failure worth retrying (logged, after a
    short backoff). Any other failure goes up."""
    try:
        async with asyncio.timeout(policy.wait_ms / 1000 + io_timeout_s):
            batches = await consumer.getmany(
                timeout_ms=policy.wait_ms, max_records=policy.max_records
            )
    except (kafka_errors.KafkaError, TimeoutError) as exc:
        if classify(exc) is not Failure.RETRYABLE:
            raise
        log.warning("fetch failed; retrying", extra={"error": str(exc)})
        await asyncio.sleep(backoff.delay(0))
        return []
    return [RawRecord.of(r) for records in batches.values() for r in records]
