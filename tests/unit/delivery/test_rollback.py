"""Which version a plain rollback (no `--to`) returns to, from the channel's promotion log alone."""

from __future__ import annotations

import pytest

from shelfcast.contract.manifest import Pointer
from shelfcast.delivery.rollback import rollback_target

pytestmark = pytest.mark.unit


def entry(seq: int, version: str, action: str = "promote", previous: str | None = None) -> Pointer:
    return Pointer("c", "m", version, "0" * 64, 1, seq, str(seq), "2026-01-01T00:00:00Z", action, "t",
                   previous_version=previous)


def test_plain_rollback_target_skips_versions_rolled_back_from():
    log = [entry(1, "1"), entry(2, "2", previous="1"), entry(3, "3", previous="2"), entry(4, "2", "rollback", "3")]
    assert rollback_target(log, "2") == "1"  # a second rollback goes further back, never forward to 3
    assert rollback_target(log[:3], "3") == "2"
    assert rollback_target(log[:1], "1") is None
    assert rollback_target(list(reversed(log)), "2") == "1"  # the log's order in the listing does not matter


def test_a_version_rolled_back_from_and_promoted_again_is_a_target_again():
    """2 was rolled back from, fixed and promoted again, then 3 came: rolling 3 back returns to 2, the version
    served just before it, not to 1."""
    log = [entry(1, "1"), entry(2, "2", previous="1"), entry(3, "1", "rollback", "2"),
           entry(4, "2", previous="1"), entry(5, "3", previous="2")]
    assert rollback_target(log, "3") == "2"
    # ...and once 3 is rolled back to 2, rolling back again goes to 1, never forward to 3.
    assert rollback_target([*log, entry(6, "2", "rollback", "3")], "2") == "1"
    # Rolled back from a second time after its re-promotion: skipped again.
    again = [*log[:4], entry(5, "1", "rollback", "2"), entry(6, "3", previous="1")]
    assert rollback_target(again, "3") == "1"
