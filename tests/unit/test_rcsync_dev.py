"""``ingester dev --rc-sync``: rc-sync and the stand-in of RevenueCat join the supervised
children only when asked for, and rc-sync calls the stand-in unless told otherwise."""

from __future__ import annotations

from core.settings import Settings
from ingester.dev import RC_SYNC_DEV_KEY, RC_SYNC_STANDIN_URL, children, rc_sync_env
from ingester.rcsync import STANDIN_PORT


def test_rc_sync_and_its_stand_in_run_only_when_asked_for() -> None:
    assert [c.verb for c in children(rc_sync=False)] == ["serve", "consume", "console"]
    assert [c.verb for c in children(rc_sync=True)] == [
        "serve",
        "consume",
        "console",
        "standin revenuecat",
        "rc-sync",
    ]


def test_rc_sync_calls_the_stand_in_with_a_dev_key_unless_told_otherwise() -> None:
    assert rc_sync_env(Settings()) == {
        "REVENUECAT_API_KEY": RC_SYNC_DEV_KEY,
        "REVENUECAT_API_URL": RC_SYNC_STANDIN_URL,
    }
    assert f":{STANDIN_PORT}/v1" in RC_SYNC_STANDIN_URL
    chosen = Settings(revenuecat_api_key="k", revenuecat_api_url="http://127.0.0.1:9/v1")
    assert rc_sync_env(chosen) == {}
