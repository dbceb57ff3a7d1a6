"""Which events belong to the other ENVIRONMENT (docs/contract.md §6, Skipped).

RevenueCat marks each event PRODUCTION or SANDBOX, in ``environment`` (or, for a
VIRTUAL_CURRENCY_TRANSACTION, in ``purchase_environment``); our own `environment` subscriber
attribute (seed 001) and Klaviyo profile property (seed 000) say `dev` or `production`. An
event that names the other environment is recorded as skipped, never applied. Events that
name no store environment (EXPERIMENT_ENROLLMENT, TEMPORARY_ENTITLEMENT_GRANT) apply in both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# RevenueCat's store environment -> our ENVIRONMENT.
REVENUECAT_ENVIRONMENTS = {"PRODUCTION": "production", "SANDBOX": "dev"}
# Where RevenueCat puts it, in order: VIRTUAL_CURRENCY_TRANSACTION events carry only the second.
REVENUECAT_ENVIRONMENT_FIELDS = ("environment", "purchase_environment")


def revenuecat_store_environment(event: Mapping[str, Any]) -> str | None:
    """The store environment an event names (PRODUCTION, SANDBOX...), or None."""
    for name in REVENUECAT_ENVIRONMENT_FIELDS:
        value = event.get(name)
        if isinstance(value, str) and value:
            return value.upper()
    return None


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
    store_env = revenuecat_store_environment(event)
    if store_env is not None:
        ours = REVENUECAT_ENVIRONMENTS.get(store_env)
        if ours is not None and ours != environment:
            return f"environment {store_env} while {environment}"
    attributes = event.get("subscriber_attributes")
    if isinstance(attributes, Mapping):
        attribute = attributes.get("environment")
        value = attribute.get("value") if isinstance(attribute, Mapping) else None
        return property_mismatch(value, environment, "environment attribute")
    return None
