"""One clock: every "now" comes from `shelfcast.contract.clock`, which a replay can move."""

from __future__ import annotations

import ast
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from shelfcast.contract import clock

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
# Calls that read the system clock. `time.perf_counter` and `time.monotonic` measure durations and stay.
FORBIDDEN = {("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"), ("date", "today"),
             ("time", "time"), ("Timestamp", "now"), ("Timestamp", "utcnow"), ("Timestamp", "today")}


def _clock_reads(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", None)
            if (name, node.func.attr) in FORBIDDEN:
                found.append(f"{path}:{node.lineno}: {name}.{node.func.attr}()")
    return found


def test_nothing_but_the_clock_module_reads_the_system_clock():
    sources = [p for tree in ("src", "flows") for p in (ROOT / tree).rglob("*.py")]
    assert len(sources) > 50
    found = [hit for path in sources if path.name != "clock.py" for hit in _clock_reads(path)]
    assert found == [], "use shelfcast.contract.clock.now()/today()/stamp() instead:\n" + "\n".join(found)


def test_the_check_finds_a_direct_read(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import datetime\nx = datetime.datetime.now()\ny = date.today()\nz = time.perf_counter()\n")
    assert [hit.split(": ")[1] for hit in _clock_reads(sample)] == ["datetime.now()", "date.today()"]


def test_a_simulated_clock_moves_every_reader_and_is_put_back():
    simulated = clock.SimulatedClock("2017-03-01T02:00:00Z")
    with clock.use_clock(simulated):
        assert clock.today() == date(2017, 3, 1)
        assert clock.stamp() == "2017-03-01T02:00:00Z"
        simulated.advance(timedelta(days=1, hours=1))
        assert clock.now() == datetime(2017, 3, 2, 3, tzinfo=timezone.utc)
    assert clock.today() != date(2017, 3, 1)


def test_stamps_are_utc_to_the_second_and_sort_as_time():
    assert clock.stamp("2017-03-01T03:00:00+01:00") == "2017-03-01T02:00:00Z"
    assert clock.stamp(datetime(2017, 3, 1, 2, 0, 0, 999)) == "2017-03-01T02:00:00Z"  # naive means UTC
    assert clock.parse(date(2017, 3, 1)) == datetime(2017, 3, 1, tzinfo=timezone.utc)
    moments = ["2017-03-01T09:00:00Z", "2017-02-28T23:59:59Z", "2017-03-01T10:00:00Z"]
    assert sorted(moments) == sorted(moments, key=clock.parse)
