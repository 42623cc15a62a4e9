"""A landing folder and a sales table on local folders (the same object-store protocol as the bucket)."""

from __future__ import annotations

import pytest

from shelfcast.contract.objects import LocalObjects
from shelfcast.data.ingest import Landing
from shelfcast.data.sales import SalesTable


@pytest.fixture
def env(tmp_path):
    """(landing, sales table), both on folders of `tmp_path`."""
    return Landing(LocalObjects(tmp_path / "landing")), SalesTable(LocalObjects(tmp_path / "bucket"), workers=2)
