"""The alert log: alert records, their history, the notification outbox and the accuracy series, in SQLite or
PostgreSQL.

Why a database: the log must record a detection and the notification it owes in one atomic step (so a process
that dies between detection and delivery loses nothing: the outbox row is there for the next run), it is small
(tens of rows a night), and it is read by an on-call CLI. S3 objects have no transactions or queries, and MLflow
tags have no lifecycle. Both engines run the same SQL (`?` and `:name` parameters, rewritten for psycopg):

- SQLite, the embedded default: one file under `Settings.home`, from the Python standard library, on a fresh
  machine with nothing else running. WAL mode and a busy timeout let the hourly ingest and the nightly retrain
  write at the same time; `BEGIN IMMEDIATE` makes every write transaction take the one write lock first.
- PostgreSQL (`Settings.postgres_url`, the server that also backs Prefect and MLflow), for more than one host.
  Every write transaction first takes one transaction-level advisory lock, the equivalent of `BEGIN IMMEDIATE`:
  writers run one after another and each sees what the previous one committed (READ COMMITTED takes a fresh
  snapshot per statement), so the read-then-write steps below (find the live alert, then update or insert;
  select due messages, then claim them) cannot interleave; readers never wait.

Lifecycle of an alert (one row per incident): a finding with a new fingerprint opens an alert; the same
fingerprint found again updates it (last seen, count, observed value, links); a check that covers the
fingerprint and does not fire resolves it; firing again within the cooldown after resolving reopens the same
row, later it opens a new one. Acknowledged alerts keep updating but are never reminded. A notification is
queued in the same transaction whenever an alert at or above the notify severity fires and none was queued
for it within the cooldown, and when a notified alert resolves.
"""

from __future__ import annotations

import json
import re
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from shelfcast.contract.clock import parse, stamp
from shelfcast.contract.errors import ShelfcastError
from shelfcast.monitor.findings import CheckResult, Finding, Scope
from shelfcast.monitor.thresholds import AlertPolicy, severity_rank

LIVE = ("open", "acknowledged")

# {id}, {real} and {stamp} differ by engine (`SQLITE_TYPES`, `POSTGRES_TYPES`): REAL is 4 bytes in PostgreSQL, and
# time stamps (ISO text, compared as text) sort in time order only in the C collation.
SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id {id},
    fingerprint TEXT NOT NULL,
    rule TEXT NOT NULL,
    severity TEXT NOT NULL,
    subject TEXT NOT NULL,
    scope_key TEXT NOT NULL,
    scope_label TEXT NOT NULL,
    scope_kind TEXT NOT NULL,
    store INTEGER,
    item INTEGER,
    model TEXT,
    model_version TEXT,
    observed {real} NOT NULL,
    threshold {real} NOT NULL,
    unit TEXT NOT NULL,
    message TEXT NOT NULL,
    context TEXT NOT NULL DEFAULT '{}',
    first_seen {stamp} NOT NULL,
    last_seen {stamp} NOT NULL,
    count INTEGER NOT NULL DEFAULT 1,
    status TEXT NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
    acknowledged_by TEXT,
    acknowledged_at {stamp},
    resolved_by TEXT,
    resolved_at {stamp},
    note TEXT,
    last_notified_at {stamp},
    mlflow_run_id TEXT,
    mlflow_url TEXT,
    prefect_flow_run_id TEXT,
    prefect_url TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_live_per_fingerprint ON alerts (fingerprint) WHERE status != 'resolved';
CREATE INDEX IF NOT EXISTS alerts_by_status ON alerts (status, severity);
CREATE TABLE IF NOT EXISTS alert_events (
    id {id},
    alert_id INTEGER NOT NULL REFERENCES alerts (id),
    at {stamp} NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS outbox (
    id {id},
    alert_id INTEGER NOT NULL REFERENCES alerts (id),
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at {stamp} NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at {stamp} NOT NULL,
    claimed_until {stamp},
    delivered_at {stamp},
    dead_at {stamp},
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (delivered_at, dead_at, next_attempt_at);
CREATE TABLE IF NOT EXISTS accuracy (
    subject TEXT NOT NULL,
    scope_key TEXT NOT NULL,
    date {stamp} NOT NULL,
    scope_kind TEXT NOT NULL,
    store INTEGER,
    item INTEGER,
    model_version TEXT,
    n INTEGER NOT NULL,
    mape_pct {real} NOT NULL,
    expected_pct {real},
    threshold_pct {real},
    recorded_at {stamp} NOT NULL,
    PRIMARY KEY (subject, scope_key, date)
);
CREATE TABLE IF NOT EXISTS expected_errors (
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    payload TEXT NOT NULL,
    recorded_at {stamp} NOT NULL,
    PRIMARY KEY (model, version)
);
"""
SQLITE_TYPES = {"id": "INTEGER PRIMARY KEY", "real": "REAL", "stamp": "TEXT"}
POSTGRES_TYPES = {"id": "INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", "real": "DOUBLE PRECISION",
                  "stamp": 'TEXT COLLATE "C"'}
# The one advisory lock every PostgreSQL write transaction takes (the module docstring): a constant no other
# user of the database takes.
WRITE_LOCK_KEY = 0x5E1FCA57


class AlertNotFound(ShelfcastError, LookupError):
    """No alert has that id."""


class AlertStateError(ShelfcastError, ValueError):
    """The alert is not in a state that allows the change (e.g. acknowledging a resolved alert)."""


@dataclass(frozen=True)
class Links:
    """Where the run that made a finding can be inspected."""

    mlflow_run_id: str | None = None
    mlflow_url: str | None = None
    prefect_flow_run_id: str | None = None
    prefect_url: str | None = None


@dataclass
class Alert:
    id: int
    fingerprint: str
    rule: str
    severity: str
    subject: str
    scope_key: str
    scope_label: str
    scope_kind: str
    store: int | None
    item: int | None
    model: str | None
    model_version: str | None
    observed: float
    threshold: float
    unit: str
    message: str
    context: dict
    first_seen: str
    last_seen: str
    count: int
    status: str
    acknowledged_by: str | None
    acknowledged_at: str | None
    resolved_by: str | None
    resolved_at: str | None
    note: str | None
    last_notified_at: str | None
    mlflow_run_id: str | None
    mlflow_url: str | None
    prefect_flow_run_id: str | None
    prefect_url: str | None

    @classmethod
    def from_row(cls, row) -> "Alert":
        data = dict(row)
        data["context"] = json.loads(data["context"] or "{}")
        return cls(**data)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class RecordSummary:
    """What one `record` call changed; ids of alerts."""

    opened: list[int] = field(default_factory=list)
    reopened: list[int] = field(default_factory=list)
    repeated: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    queued: int = 0

    @property
    def touched(self) -> list[int]:
        return self.opened + self.reopened + self.repeated + self.resolved


@dataclass
class OutboxMessage:
    id: int
    alert_id: int
    kind: str
    payload: dict
    attempts: int


class AlertLog:
    """The alert log in one SQLite file or one PostgreSQL database (module docstring). Every write is one short
    transaction; `timeout_s` bounds how long one waits for another's."""

    def __init__(self, target: str | Path, timeout_s: float = 30.0):
        """`target`: an SQLite file, or the `postgresql://` URL of a database (what `Settings.alerts_db` gives)."""
        if is_postgres_url(target):
            self.path, self._engine = str(target), _Postgres(str(target), timeout_s)
        else:
            self.path = Path(target)
            self._engine = _SQLite(self.path, timeout_s)
        self._engine.create_schema()

    def _read(self):
        return closing(self._engine.connect())

    def _write(self):
        return _Transaction(self._engine)

    # ---- recording findings -------------------------------------------------------------------------------

    def record(self, result: CheckResult, policy: AlertPolicy, links: Links = Links(), now=None) -> RecordSummary:
        """Apply one check run: open, update, reopen or resolve alerts and queue their notifications, atomically."""
        from shelfcast.monitor.notify import notification_payload

        now = stamp(now)
        cooldown = timedelta(hours=policy.cooldown_hours)
        summary = RecordSummary()
        fired = result.fired
        with self._write() as conn:
            for finding in _unique(result.findings):
                alert_id, change = self._upsert(conn, finding, links, now, cooldown)
                getattr(summary, change).append(alert_id)
                if self._owes_notification(conn, alert_id, policy, now, cooldown):
                    kind = {"opened": "fired", "reopened": "reopened", "repeated": "reminder"}[change]
                    summary.queued += self._enqueue(conn, alert_id, kind, now, notification_payload)
            live = conn.execute(
                f"SELECT id, fingerprint, last_notified_at, severity FROM alerts WHERE status IN {LIVE}"
            ).fetchall()
            for row in live:
                if row["fingerprint"] in result.checked and row["fingerprint"] not in fired:
                    conn.execute(
                        "UPDATE alerts SET status='resolved', resolved_by='auto', resolved_at=? WHERE id=?",
                        (now, row["id"]),
                    )
                    _event(conn, row["id"], now, "resolved", "auto", "the condition cleared")
                    summary.resolved.append(row["id"])
                    if row["last_notified_at"] and severity_rank(row["severity"]) >= severity_rank(policy.notify_min_severity):
                        summary.queued += self._enqueue(conn, row["id"], "resolved", now, notification_payload)
        return summary

    def _upsert(self, conn, finding: Finding, links: Links, now: str, cooldown: timedelta) -> tuple[int, str]:
        scope: Scope = finding.scope
        values = {
            "severity": finding.severity,
            "scope_label": scope.label,
            "model_version": scope.version,
            "observed": float(finding.observed),
            "threshold": float(finding.threshold),
            "unit": finding.unit,
            "message": finding.message,
            "context": json.dumps(finding.context, default=str),
            "last_seen": now,
            **{k: v for k, v in links.__dict__.items() if v is not None},
        }
        assignments = ", ".join(f"{k}=:{k}" for k in values)
        live = conn.execute(
            f"SELECT id FROM alerts WHERE fingerprint=? AND status IN {LIVE}", (finding.fingerprint,)
        ).fetchone()
        if live:
            conn.execute(f"UPDATE alerts SET {assignments}, count=count+1 WHERE id=:id", {**values, "id": live["id"]})
            _event(conn, live["id"], now, "seen", "monitor", f"observed {finding.observed:.4g}")
            return live["id"], "repeated"
        recent = conn.execute(
            "SELECT id FROM alerts WHERE fingerprint=? AND status='resolved' AND resolved_at>=? "
            "ORDER BY resolved_at DESC LIMIT 1",
            (finding.fingerprint, stamp(parse(now) - cooldown)),
        ).fetchone()
        if recent:
            conn.execute(
                f"UPDATE alerts SET {assignments}, count=count+1, status='open', resolved_by=NULL, resolved_at=NULL "
                "WHERE id=:id",
                {**values, "id": recent["id"]},
            )
            _event(conn, recent["id"], now, "reopened", "monitor", "fired again within the cooldown")
            return recent["id"], "reopened"
        row = {
            **values,
            "fingerprint": finding.fingerprint,
            "rule": finding.rule,
            "subject": finding.subject,
            "scope_key": scope.key,
            "scope_kind": scope.kind,
            "store": scope.store,
            "item": scope.item,
            "model": scope.model,
            "first_seen": now,
            "status": "open",
        }
        alert_id = conn.execute(
            f"INSERT INTO alerts ({', '.join(row)}) VALUES ({', '.join(':' + k for k in row)}) RETURNING id", row
        ).fetchone()["id"]
        _event(conn, alert_id, now, "opened", "monitor", finding.message)
        return alert_id, "opened"

    @staticmethod
    def _owes_notification(conn, alert_id: int, policy: AlertPolicy, now: str, cooldown: timedelta) -> bool:
        row = conn.execute("SELECT severity, status, last_notified_at FROM alerts WHERE id=?", (alert_id,)).fetchone()
        if row["status"] != "open" or severity_rank(row["severity"]) < severity_rank(policy.notify_min_severity):
            return False
        last = row["last_notified_at"]
        return last is None or parse(now) - parse(last) >= cooldown

    def _enqueue(self, conn, alert_id: int, kind: str, now: str, make_payload) -> int:
        alert = Alert.from_row(conn.execute("SELECT * FROM alerts WHERE id=?", (alert_id,)).fetchone())
        conn.execute(
            "INSERT INTO outbox (alert_id, kind, payload, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?)",
            (alert_id, kind, json.dumps(make_payload(alert, kind)), now, now),
        )
        conn.execute("UPDATE alerts SET last_notified_at=? WHERE id=?", (now, alert_id))
        return 1

    # ---- on-call actions ----------------------------------------------------------------------------------

    def acknowledge(self, alert_id: int, by: str, note: str = "", now=None) -> Alert:
        return self._transition(alert_id, "acknowledged", by, note, now)

    def resolve(self, alert_id: int, by: str, note: str = "", now=None) -> Alert:
        return self._transition(alert_id, "resolved", by, note, now)

    def _transition(self, alert_id: int, status: str, by: str, note: str, now) -> Alert:
        now = stamp(now)
        with self._write() as conn:
            row = conn.execute("SELECT status FROM alerts WHERE id=?", (alert_id,)).fetchone()
            if row is None:
                raise AlertNotFound(f"no alert with id {alert_id}; list them with `shelfcast alerts list --status all`")
            if row["status"] == "resolved":
                raise AlertStateError(f"alert {alert_id} is already resolved; nothing to {status[:-2]}")
            if row["status"] == status:
                raise AlertStateError(f"alert {alert_id} is already {status}")
            who = "acknowledged_by" if status == "acknowledged" else "resolved_by"
            when = "acknowledged_at" if status == "acknowledged" else "resolved_at"
            conn.execute(
                f"UPDATE alerts SET status=?, {who}=?, {when}=?, note=COALESCE(NULLIF(?, ''), note) WHERE id=?",
                (status, by, now, note, alert_id),
            )
            _event(conn, alert_id, now, status, by, note)
        return self.get(alert_id)

    def log_event(self, alert_id: int, kind: str, actor: str, detail: str, now=None) -> None:
        with self._write() as conn:
            _event(conn, alert_id, stamp(now), kind, actor, detail)

    # ---- reading ------------------------------------------------------------------------------------------

    def get(self, alert_id: int) -> Alert:
        with self._read() as conn:
            row = conn.execute("SELECT * FROM alerts WHERE id=?", (alert_id,)).fetchone()
        if row is None:
            raise AlertNotFound(f"no alert with id {alert_id}; list them with `shelfcast alerts list --status all`")
        return Alert.from_row(row)

    def list(self, statuses=LIVE, min_severity: str = "info", rule: str | None = None, limit: int = 200) -> list[Alert]:
        """Alerts in `statuses`, at or above `min_severity`, most severe and most recent first."""
        query = f"SELECT * FROM alerts WHERE status IN ({', '.join('?' * len(statuses))})"
        params: list = list(statuses)
        if rule:
            query += " AND rule=?"
            params.append(rule)
        with self._read() as conn:
            rows = [Alert.from_row(r) for r in conn.execute(query + " ORDER BY last_seen DESC, id DESC", params)]
        rows = [a for a in rows if severity_rank(a.severity) >= severity_rank(min_severity)]
        rows.sort(key=lambda a: -severity_rank(a.severity))
        return rows[:limit]

    def events(self, alert_id: int) -> list[dict]:
        with self._read() as conn:
            return [dict(r) for r in conn.execute("SELECT * FROM alert_events WHERE alert_id=? ORDER BY id", (alert_id,))]

    def live_candidate_alerts(self, model: str, version) -> list[Alert]:
        """Open or acknowledged alerts raised on this candidate model version."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT * FROM alerts WHERE subject='candidate' AND model=? AND model_version=? AND status IN {LIVE}",
                (model, None if version is None else str(version)),
            ).fetchall()
        return [Alert.from_row(r) for r in rows]

    # ---- outbox -------------------------------------------------------------------------------------------

    def claim_outbox(self, now=None, limit: int = 50, lease_s: float = 120.0) -> list[OutboxMessage]:
        """Take due, undelivered messages for one delivery run; a claim expires after `lease_s` if the run dies."""
        now_dt = parse(stamp(now))
        now, until = stamp(now_dt), stamp(now_dt + timedelta(seconds=lease_s))
        with self._write() as conn:
            rows = conn.execute(
                "UPDATE outbox SET claimed_until=? WHERE id IN (SELECT id FROM outbox WHERE delivered_at IS NULL "
                "AND dead_at IS NULL AND next_attempt_at<=? AND (claimed_until IS NULL OR claimed_until<?) "
                "ORDER BY id LIMIT ?) RETURNING id, alert_id, kind, payload, attempts",
                (until, now, now, limit),
            ).fetchall()
        return sorted(
            (OutboxMessage(r["id"], r["alert_id"], r["kind"], json.loads(r["payload"]), r["attempts"]) for r in rows),
            key=lambda m: m.id,
        )

    def mark_delivered(self, message: OutboxMessage, attempts: int, detail: str, event: str = "notified", now=None) -> None:
        now = stamp(now)
        with self._write() as conn:
            conn.execute(
                "UPDATE outbox SET delivered_at=?, attempts=attempts+?, claimed_until=NULL, last_error=NULL WHERE id=?",
                (now, attempts, message.id),
            )
            _event(conn, message.alert_id, now, event, "webhook", f"{message.kind}: {detail}")

    def mark_failed(self, message: OutboxMessage, attempts: int, error: str, retry_at, dead: bool, now=None) -> None:
        now = stamp(now)
        with self._write() as conn:
            conn.execute(
                "UPDATE outbox SET attempts=attempts+?, last_error=?, next_attempt_at=?, claimed_until=NULL, "
                "dead_at=? WHERE id=?",
                (attempts, error[:500], stamp(retry_at), now if dead else None, message.id),
            )
            if dead:
                _event(conn, message.alert_id, now, "notify_dead", "webhook", f"{message.kind}: gave up: {error[:200]}")

    def outbox(self, pending_only: bool = True) -> list[dict]:
        query = "SELECT id, alert_id, kind, created_at, attempts, next_attempt_at, delivered_at, dead_at, last_error FROM outbox"
        if pending_only:
            query += " WHERE delivered_at IS NULL"
        with self._read() as conn:
            return [dict(r) for r in conn.execute(query + " ORDER BY id")]

    # ---- accuracy series and expected errors --------------------------------------------------------------

    def record_accuracy(self, rows: list[dict], now=None) -> None:
        """Upsert daily accuracy points: dicts with subject, scope (Scope), date, n, mape_pct, expected_pct,
        threshold_pct and model_version."""
        now = stamp(now)
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO accuracy (subject, scope_key, date, scope_kind, store, item, model_version, n, mape_pct, "
                "expected_pct, threshold_pct, recorded_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT "
                "(subject, scope_key, date) DO UPDATE SET n=excluded.n, mape_pct=excluded.mape_pct, "
                "expected_pct=excluded.expected_pct, threshold_pct=excluded.threshold_pct, "
                "model_version=excluded.model_version, recorded_at=excluded.recorded_at",
                [
                    (r["subject"], r["scope"].key, str(r["date"])[:10], r["scope"].kind, r["scope"].store,
                     r["scope"].item, r.get("model_version"), int(r["n"]), float(r["mape_pct"]),
                     r.get("expected_pct"), r.get("threshold_pct"), now)
                    for r in rows
                ],
            )

    def accuracy(self, subject: str = "champion", scope_kind: str = "store", since: str | None = None) -> list[dict]:
        query = "SELECT * FROM accuracy WHERE subject=? AND scope_kind=?"
        params: list = [subject, scope_kind]
        if since:
            query += " AND date>=?"
            params.append(since)
        with self._read() as conn:
            return [dict(r) for r in conn.execute(query + " ORDER BY date, store, item", params)]

    def save_expected(self, model: str, version, payload: str, now=None) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO expected_errors (model, version, payload, recorded_at) VALUES (?,?,?,?) "
                "ON CONFLICT (model, version) DO UPDATE SET payload=excluded.payload, recorded_at=excluded.recorded_at",
                (model, str(version), payload, stamp(now)),
            )

    def load_expected(self, model: str, version) -> str | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT payload FROM expected_errors WHERE model=? AND version=?", (model, str(version))
            ).fetchone()
        return None if row is None else row["payload"]


def is_postgres_url(target) -> bool:
    return str(target).startswith(("postgresql://", "postgres://"))


def _schema(types: dict[str, str]) -> str:
    text = SCHEMA
    for name, sql_type in types.items():
        text = text.replace("{" + name + "}", sql_type)
    return text


class _SQLite:
    """One SQLite file: WAL, foreign keys on, writers take the write lock first (`BEGIN IMMEDIATE`)."""

    def __init__(self, path: Path, timeout_s: float):
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout_s = timeout_s

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def begin(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def create_schema(self) -> None:
        with closing(self.connect()) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_schema(SQLITE_TYPES))


class _Postgres:
    """One PostgreSQL database: every write transaction takes the advisory lock `WRITE_LOCK_KEY` first (the
    module docstring); waiting on a lock or for a connection stops after `timeout_s`, like SQLite's busy timeout."""

    def __init__(self, url: str, timeout_s: float):
        self.url = url
        self.timeout_s = timeout_s

    def connect(self) -> "_PsycopgConnection":
        import psycopg
        from psycopg.rows import dict_row

        conn = psycopg.connect(self.url, autocommit=True, row_factory=dict_row,
                               connect_timeout=max(1, round(self.timeout_s)),
                               options=f"-c lock_timeout={round(self.timeout_s * 1000)}")
        return _PsycopgConnection(conn)

    def begin(self, conn: "_PsycopgConnection") -> None:
        conn.execute("BEGIN")
        conn.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK_KEY,))

    def create_schema(self) -> None:
        # Under the write lock: two processes creating the tables at once would collide in the catalogue.
        with _Transaction(self) as conn:
            conn.executescript(_schema(POSTGRES_TYPES))


_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class _PsycopgConnection:
    """A psycopg connection that takes the SQLite placeholders (`?`, `:name`) the queries here are written in."""

    def __init__(self, conn):
        self._conn = conn

    def execute(self, sql: str, params=None):
        return self._conn.execute(_NAMED.sub(r"%(\1)s", sql.replace("?", "%s")), params or None)

    def executemany(self, sql: str, rows) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(sql.replace("?", "%s"), rows)

    def executescript(self, sql: str) -> None:
        self._conn.execute(sql)  # no parameters: psycopg sends the statements as one simple query

    def close(self) -> None:
        self._conn.close()


class _Transaction:
    """The engine's write transaction (its `begin`) ... `COMMIT` (or `ROLLBACK` on error), on a connection of its
    own that is closed afterwards."""

    def __init__(self, engine):
        self.engine = engine
        self.conn = engine.connect()

    def __enter__(self):
        try:
            self.engine.begin(self.conn)
        except BaseException:
            self.conn.close()
            raise
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.conn.close()


def _event(conn, alert_id: int, at: str, kind: str, actor: str, detail: str) -> None:
    conn.execute(
        "INSERT INTO alert_events (alert_id, at, kind, actor, detail) VALUES (?, ?, ?, ?, ?)",
        (alert_id, at, kind, actor, detail or ""),
    )


def _unique(findings: list[Finding]) -> list[Finding]:
    """One finding per fingerprint (the first), so one run cannot count an alert twice."""
    seen, out = set(), []
    for finding in findings:
        if finding.fingerprint not in seen:
            seen.add(finding.fingerprint)
            out.append(finding)
    return out
