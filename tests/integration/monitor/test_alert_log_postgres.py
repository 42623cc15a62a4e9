"""The alert log on a real PostgreSQL server (the session's, started for these tests in any session): the unit
tests of the log run again on it, and its write lock holds between processes that write at the same moment
(a barrier file releases them together)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tests.conftest import new_database
from tests.unit.monitor import test_alert_log as unit

from shelfcast.monitor.alert_log import AlertLog
from shelfcast.monitor.findings import CheckResult

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]

# Every unit test of the log, on a fresh PostgreSQL database instead of a fresh SQLite file (the `store` fixture
# below replaces the unit module's).
globals().update({name: test for name, test in vars(unit).items()
                  if name.startswith("test_") and "tmp_path" not in test.__code__.co_varnames})


@pytest.fixture
def database(postgres):
    return postgres.database(new_database(postgres, "alerts"))


@pytest.fixture
def store(database):
    return AlertLog(database)


def test_the_log_is_in_postgresql_with_its_types(database, store):
    import psycopg

    store.record(unit.fired(unit.finding(observed=27.912345678)), unit.POLICY, now=unit.at(0))
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT observed, first_seen FROM alerts").fetchall() == [(27.912345678, "2017-03-02T03:00:00Z")]
        types = dict(conn.execute("SELECT column_name, data_type FROM information_schema.columns "
                                  "WHERE table_name = 'alerts' AND column_name IN ('id', 'observed')").fetchall())
    assert types == {"id": "integer", "observed": "double precision"}


def test_two_logs_on_one_database_see_each_other(database):
    first, second = AlertLog(database), AlertLog(database)
    first.record(unit.fired(unit.finding()), unit.POLICY, now=unit.at(0))
    assert second.record(unit.fired(unit.finding()), unit.POLICY, now=unit.at(1)).repeated == [1]


CHILD = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from tests.unit.monitor import test_alert_log as unit
    from shelfcast.monitor.alert_log import AlertLog
    from shelfcast.monitor.findings import CheckResult

    database, go, job = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    log = AlertLog(database)
    findings = [unit.finding(store=store) for store in range(40)]
    while not go.exists():
        time.sleep(0.002)
    if job == "record":
        print(json.dumps(log.record(CheckResult(findings, {f.fingerprint for f in findings}), unit.POLICY,
                                    now=unit.at(0)).queued))
    else:
        claimed = []
        while batch := log.claim_outbox(now=unit.at(0), limit=3):
            claimed += [message.id for message in batch]
        print(json.dumps(claimed))
""")


def at_once(database, tmp_path, job: str, processes: int = 2) -> list:
    """Runs `processes` children that wait for one barrier file, then do `job` on `database`; their results."""
    go = tmp_path / f"go-{job}"
    children = [subprocess.Popen([sys.executable, "-c", CHILD, database, str(go), job], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(processes)]
    time.sleep(3.0)  # every child has opened the log and waits at the barrier
    go.touch()
    results = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err[-2000:]
        results.append(json.loads(out))
    return results


def test_two_processes_recording_the_same_findings_at_once_open_each_alert_once(database, tmp_path):
    """Without the write lock both find no live alert and both insert: the second insert breaks the unique index
    (one live alert per fingerprint) and its process fails."""
    queued = at_once(database, tmp_path, "record")
    assert sorted(queued) == [0, 40]  # the first opens and queues 40, the second sees them and repeats
    alerts = AlertLog(database).list()
    assert len(alerts) == 40 and {a.count for a in alerts} == {2}
    assert len(AlertLog(database).outbox()) == 40


def test_two_processes_claiming_the_outbox_at_once_take_each_message_once(database, tmp_path):
    """Both select the same due messages; without the write lock, the second claim (READ COMMITTED) waits for
    the first's row locks and then claims the rows again."""
    log = AlertLog(database)
    findings = [unit.finding(store=store) for store in range(40)]
    assert log.record(CheckResult(findings, {f.fingerprint for f in findings}), unit.POLICY, now=unit.at(0)).queued == 40
    first, second = at_once(database, tmp_path, "claim")
    assert set(first).isdisjoint(second)
    assert sorted(first + second) == [m["id"] for m in log.outbox()] == list(range(1, 41))
