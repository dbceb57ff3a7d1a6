"""Which events belong to the other ENVIRONMENT (docs/contract.md §6, Skipped).

RevenueCat marks each event PRODUCTION or SANDBOX; our own `environment` subscriber attribute
(seed 001) and Klaviyo profile property (seed 000) say `dev` or `production`. An event that
names the other environment is recorded as skipped, never applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# RevenueCat's store environment -> our ENVIRONMENT.
REVENUECAT_ENVIRONMENTS = {"PRODUCTION": "production", "SANDBOX": "dev"}


def property_mismatch(value: Any, environment: str, what: str) -> str | None:
    """The skip reason when ``value`` (an ``environment`` property) names another
    environment; None when it matches or is absent."""
    if value is None or value == "":
        return None
    if str(value) != environment:
        return f"{what} {value} while {environment}"
    return None


def revenuecat_mismatch(event: Mapping[str, Any], environment: str) -> str | None:
    """Skip reason for a RevenueCat ``event`` object, checking the store environment first,
    then the ``environment`` subscriber attribute."""
    store_env = event.get("environment")
    if isinstance(store_env, str) and store_env:
        ours = REVENUECAT_ENVIRONMENTS.get(store_env.upper())
        if ours is not None and ours != environment:
            return f"environment {store_env} while {environment}"
    attributes = event.get("subscriber_attributes")
    if isinstance(attributes, Mapping):
        attribute = attributes.get("environment")
        value = attribute.get("value") if isinstance(attribute, Mapping) else None
        return property_mismatch(value, environment, "environment attribute")
    return None
