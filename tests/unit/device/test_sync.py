"""The store's settings and its channel and poll-interval parsing (no server; syncs are in
tests/integration/device/test_sync.py)."""

import pytest

from shelfcast.device.cli import DEFAULTS
from shelfcast.device.sync import assigned_channel, parse_every

pytestmark = pytest.mark.unit


def test_store_settings_default_like_the_trainer_settings():
    from shelfcast.config import Settings

    settings = Settings(_env_file=None)
    assert DEFAULTS == {"SHELFCAST_S3_ENDPOINT_URL": settings.s3_endpoint_url, "SHELFCAST_S3_REGION": settings.s3_region,
                        "SHELFCAST_BUCKET": settings.bucket, "SHELFCAST_STORE_ACCESS_KEY": settings.store_access_key,
                        "SHELFCAST_HOME": str(settings.home)}


def test_channel_assignment_and_poll_interval_parsing():
    fleet = {"default": "stable", "channels": {"canary": [1, 2], "pilot": [7]}}
    assert [assigned_channel(s, fleet) for s in (1, 2, 3, 7)] == ["canary", "canary", "stable", "pilot"]
    with pytest.raises(ValueError, match="several channels"):
        assigned_channel(1, {"default": "stable", "channels": {"canary": [1], "pilot": [1]}})
    assert [parse_every(t) for t in ("15m", "30s", "1h", "90")] == [900, 30, 3600, 90]
    with pytest.raises(ValueError, match="15m"):
        parse_every("soon")
