"""The store's settings, its channel and poll-interval parsing, and the client's work on its own folder: the
bookkeeping files, the swap, the refusal of stale pointers, the polling loop and the fallback between installed
versions (no server; syncs against the bucket are in tests/integration/device/test_sync.py)."""

import json
import threading
from types import SimpleNamespace

import pytest

from shelfcast.contract import clock
from shelfcast.contract.errors import IntegrityError, ModelLoadError
from shelfcast.contract.manifest import Manifest, Pointer, sha256_hex
from shelfcast.contract.objects import ObjectStore, make_s3_client
from shelfcast.device.cli import DEFAULTS
from shelfcast.device.sync import (
    Installed,
    StoreClient,
    SyncResult,
    assigned_channel,
    parse_every,
    read_installed,
    read_installed_folder,
    read_json,
    serving_model,
    write_atomic,
)

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


NOW = "2026-03-01T06:00:00Z"
SPEC = {"lookback": 14, "scaling": "window_mean", "calendar": True, "sales_min": 0.0, "sales_max": 1.0}


@pytest.fixture(autouse=True)
def fixed_clock():
    with clock.use_clock(clock.SimulatedClock(NOW)):
        yield


@pytest.fixture
def offline():
    """An `ObjectStore` whose endpoint nobody listens on: these tests never reach S3 (a request would fail)."""
    from shelfcast.stack.process import free_port

    client = make_s3_client(f"http://127.0.0.1:{free_port()}", "store", "secret", max_attempts=1,
                            connect_timeout=0.2)
    return ObjectStore(client, "shelf")


def install(directory, version, model=b"not a flatbuffer", name="demand"):
    """A version on the store's disk whose file matches its manifest (it does not load: it is no model)."""
    folder = directory / "versions" / version
    folder.mkdir(parents=True)
    (folder / "model.tflite").write_bytes(model)
    manifest = Manifest(name=name, version=version, sha256=sha256_hex(model), bytes=len(model), input_spec=SPEC)
    (folder / "manifest.json").write_bytes(manifest.to_json())
    return manifest


def pointer(version, seq, channel="stable"):
    return Pointer(channel, "demand", version, "a" * 64, 10, seq, "m", NOW, "promote", "test")


def test_write_atomic_replaces_the_file_whole_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "active.json"
    target.write_bytes(b"old")
    write_atomic(target, b"new")
    write_atomic(tmp_path / "state.json", b"bookkeeping", durable=False)
    assert target.read_bytes() == b"new" and (tmp_path / "state.json").read_bytes() == b"bookkeeping"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["active.json", "state.json"]
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing" / "active.json", b"x")


def test_read_json_gives_an_empty_dict_for_anything_but_a_json_object(tmp_path):
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "ok.json").write_text('{"current": "3"}')
    assert [read_json(tmp_path / n) for n in ("list.json", "bad.json", "missing.json", "ok.json")] == [
        {}, {}, {}, {"current": "3"}]


def test_installed_versions_are_read_from_their_folder_and_rechecked(tmp_path):
    manifest = install(tmp_path, "4", b"0123456789")
    assert read_installed(tmp_path, None) is None and read_installed(tmp_path, "") is None
    assert read_installed(tmp_path, "5") is None
    installed = read_installed(tmp_path, "4")
    assert installed == Installed("4", tmp_path / "versions" / "4", manifest)
    assert installed.model_path == tmp_path / "versions" / "4" / "model.tflite"
    assert read_installed_folder(tmp_path / "versions" / "4") == manifest
    with pytest.raises(ModelLoadError, match=r"model .*/versions/4/model.tflite does not load"):
        installed.check()
    installed.model_path.write_bytes(b"01234")
    with pytest.raises(IntegrityError, match=r"/versions/4/model.tflite: truncated \(5 bytes, manifest says 10\) "
                                             r"for demand version 4; refused"):
        installed.check()
    (tmp_path / "versions" / "4" / "manifest.json").write_text("[]")
    assert read_installed(tmp_path, "4") is None
    with pytest.raises(IntegrityError) as refused:
        read_installed_folder(tmp_path / "versions" / "4")
    assert str(refused.value) == f"{tmp_path / 'versions' / '4' / 'manifest.json'} holds list, expected a JSON object"


def test_sync_result_is_ok_unless_refused_or_failed_and_prints_one_line():
    assert [SyncResult(s, "stable", None, None, "").ok for s in
            ("unchanged", "updated", "empty", "refused", "error", "frozen")] == [True, True, True, False, False, False]
    result = SyncResult("updated", "canary", "7", "7", "now serving 7", model_bytes=5552, seconds=0.0126)
    assert result.line(store_id=3) == (f"{NOW} store=3 channel=canary status=updated serving=7 offered=7 "
                                       "model_bytes=5552 13ms: now serving 7")
    assert result.line() == f"{NOW} channel=canary status=updated serving=7 offered=7 model_bytes=5552 13ms: now serving 7"
    assert result.line(store_id=0).startswith(f"{NOW} store=0 channel=canary")
    assert (result.bytes_received, SyncResult("empty", "c", None, None, "").seconds) == (0, 0.0)
    assert SyncResult("empty", "c", None, None, "-", seconds=2.0).line().endswith(" 2000ms: -")


def test_the_client_reads_its_folder_and_reports_each_stage(tmp_path, offline):
    stages = []
    client = StoreClient(offline, "stable", str(tmp_path), store_id=5, on_stage=stages.append)
    assert (client.directory, client.stage, client.store_id, client.max_model_bytes) == (
        tmp_path, "idle", 5, 64 * 1024 * 1024)
    client.on_stage("pointer")
    client.on_stage("model")
    assert (stages, client.stage) == (["pointer", "model"], "model")
    StoreClient(offline, "stable", tmp_path).on_stage("swap")  # no callback: nothing to report to
    assert client.current() is None and client.previous() is None and client.active() == {}
    three, four = install(tmp_path, "3"), install(tmp_path, "4")
    (tmp_path / "active.json").write_text(json.dumps({"current": "4", "previous": "3"}))
    assert (client.current().manifest, client.previous().manifest) == (four, three)
    client._save_state(pointer_seq=2)
    client._save_state(channel="stable", pointer_seq=3)  # written in key order, whatever order they came in
    assert json.loads((tmp_path / "state.json").read_text()) == {"channel": "stable", "pointer_seq": 3}
    assert (tmp_path / "state.json").read_text() == '{\n  "channel": "stable",\n  "pointer_seq": 3\n}'


def test_a_pointer_behind_the_move_already_followed_is_refused(tmp_path, offline):
    client = StoreClient(offline, "stable", tmp_path)
    followed = {"channel": "stable", "pointer_seq": 5, "pointer_version": "9"}
    for state in ({}, {**followed, "channel": "canary"}, {**followed, "pointer_seq": "5"},
                  {**followed, "pointer_seq": True}, {**followed, "pointer_seq": None}):
        client._check_not_behind(pointer("1", 1), state, "channels/stable/latest.json")  # nothing followed yet
    client._check_not_behind(pointer("9", 5), followed, "k")  # the same move again
    client._check_not_behind(pointer("2", 6), followed, "k")  # a newer move, even to an older version
    with pytest.raises(IntegrityError) as older:
        client._check_not_behind(pointer("8", 4), followed, "channels/stable/latest.json")
    assert str(older.value) == (
        "s3://shelf/channels/stable/latest.json is move #4 (version 8) but this store already followed move #5 "
        "(version 9): a stale or replayed pointer; refused. If the channel was deliberately recreated, delete "
        f"{tmp_path / 'state.json'} to follow it again")
    with pytest.raises(IntegrityError, match=r"is move #5 \(version 7\) but this store already followed move #5 "
                                             r"\(version 9\)"):
        client._check_not_behind(pointer("7", 5), followed, "k")


def test_the_swap_keeps_the_current_and_previous_versions_only(tmp_path, offline):
    client = StoreClient(offline, "stable", tmp_path)
    for version in ("1", "2", "3"):
        install(tmp_path, version)
    client._activate("2", "1")
    assert (tmp_path / "active.json").read_text() == (
        f'{{\n  "activated_at": "{NOW}",\n  "channel": "stable",\n  "current": "2",\n  "previous": "1"\n}}')
    assert sorted(p.name for p in (tmp_path / "versions").iterdir()) == ["1", "2"]
    client._activate("2", "2")  # the same version again: the previous one stays the previous one
    assert json.loads((tmp_path / "active.json").read_text())["previous"] == "1"
    assert sorted(p.name for p in (tmp_path / "versions").iterdir()) == ["1", "2"]

    staging = tmp_path / ".incoming" / "ab" / "5-x"
    staging.mkdir(parents=True)
    (staging / "model.tflite").write_bytes(b"five")
    (tmp_path / "versions" / "5").mkdir()
    (tmp_path / "versions" / "5" / "model.tflite").write_bytes(b"damaged")  # an earlier attempt's leftover
    client._install(staging, "5", "2")
    assert (tmp_path / "versions" / "5" / "model.tflite").read_bytes() == b"five" and not staging.exists()
    assert sorted(p.name for p in (tmp_path / "versions").iterdir()) == ["2", "5"]
    assert json.loads((tmp_path / "active.json").read_text())["current"] == "5"

    fresh = StoreClient(offline, "stable", tmp_path / "new")
    fresh.directory.mkdir()
    staging = tmp_path / "first"
    staging.mkdir()
    fresh._install(staging, "1", None)  # the first install creates versions/
    assert [p.name for p in (fresh.directory / "versions").iterdir()] == ["1"]
    assert json.loads((fresh.directory / "active.json").read_text())["previous"] is None


def test_the_timestamp_is_remembered_only_when_one_was_verified(tmp_path, offline):
    client = StoreClient(offline, "stable", tmp_path)
    client._remember_metadata(SimpleNamespace(timestamp_etag=lambda: None, expires=lambda: "never read"))
    assert not (tmp_path / "state.json").exists()
    trust = SimpleNamespace(timestamp_etag=lambda: '"e1"', expires=lambda: "2026-03-08T00:00:00Z")
    client._remember(SimpleNamespace(hashes={"sha256": "b" * 64}), pointer("4", 2), trust)
    assert json.loads((tmp_path / "state.json").read_text()) == {
        "channel": "stable", "pointer_sha256": "b" * 64, "pointer_version": "4", "pointer_seq": 2,
        "timestamp_etag": '"e1"', "metadata_expires": "2026-03-08T00:00:00Z"}


def test_a_store_without_a_trusted_root_refuses_before_reading_the_bucket(tmp_path, offline):
    install(tmp_path, "3")
    (tmp_path / "active.json").write_text(json.dumps({"current": "3", "previous": None}))
    (tmp_path / ".incoming" / "old").mkdir(parents=True)
    stages = []
    result = StoreClient(offline, "stable", tmp_path, on_stage=stages.append).sync()
    assert (result.status, result.channel, result.serving, result.offered, result.model_bytes) == (
        "refused", "stable", "3", None, 0)
    assert result.message == (f"this store has no trusted root in {tmp_path / 'metadata'}: provision the bucket's "
                              "root with `shelfcast store sync --trusted-root root.json` (from `shelfcast keys show "
                              "--root-out root.json` on the trainer); keeps serving 3")
    assert stages == ["metadata"] and not (tmp_path / ".incoming").exists()
    assert 0 < result.seconds < 5 and result.bytes_received == 0
    state = json.loads((tmp_path / "state.json").read_text())
    assert state == {"last_poll_at": NOW, "last_status": "refused", "last_message": result.message}

    damaged = StoreClient(offline, "stable", tmp_path / "fresh", trusted_root=b"{not a root").sync()
    assert (damaged.status, damaged.serving) == ("refused", None)
    assert damaged.message == ("the signed delivery metadata in s3://shelf/metadata/ does not verify "
                               "(DeserializationError: Failed to deserialize JSON); refused; no model installed yet")


def test_the_polling_loop_reports_every_poll_and_survives_a_failing_one(tmp_path, offline, monkeypatch):
    install(tmp_path, "3")
    (tmp_path / "active.json").write_text(json.dumps({"current": "3"}))
    client = StoreClient(offline, "stable", tmp_path)
    outcomes = iter([SyncResult("unchanged", "stable", "3", "3", "same"), RuntimeError("disk on fire")])

    def sync():  # the second poll breaks in a way sync() does not handle itself
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(client, "sync", sync)
    reported, waits = [], []
    stop = SimpleNamespace(is_set=lambda: False, wait=waits.append)
    asked = []

    def uniform(low, high):
        asked.append((low, high))
        return high

    results = client.run(900, stop=stop, max_polls=2, jitter=0.1, report=reported.append,
                         rng=SimpleNamespace(uniform=uniform))
    assert asked == [(-0.1, 0.1)]
    assert reported == results and [r.status for r in results] == ["unchanged", "error"]
    assert (results[1].serving, results[1].channel, results[1].offered) == ("3", "stable", None)
    assert results[1].message == ("sync failed unexpectedly: RuntimeError: disk on fire; keeps serving 3, "
                                  "retrying at the next poll")
    assert waits == [pytest.approx(990.0)]  # between the polls, not after the last one

    monkeypatch.setattr(client, "sync", lambda: SyncResult("empty", "stable", None, None, "nothing yet"))
    monkeypatch.setattr(client, "active", lambda: 1 / 0)
    stopped = threading.Event()
    stopped.set()
    assert client.run(1, stop=stopped) == []
    waits.clear()
    assert len(client.run(-5, stop=stop, max_polls=3, rng=SimpleNamespace(uniform=lambda low, high: low))) == 3
    assert waits == [0.0, 0.0]
    monkeypatch.setattr(client, "sync", lambda: 1 / 0)
    (failed,) = client.run(1, stop=stop, max_polls=1)
    assert (failed.serving, failed.message) == (None, "sync failed unexpectedly: ZeroDivisionError: division by "
                                                      "zero; keeps serving None, retrying at the next poll")


def test_serving_model_says_what_is_missing_and_how_to_repair_it(tmp_path):
    with pytest.raises(ModelLoadError) as empty:
        serving_model(tmp_path)
    assert str(empty.value) == (f"{tmp_path} holds no model yet; run `shelfcast store sync --dir {tmp_path}` first")
    install(tmp_path, "3")
    install(tmp_path, "4")
    (tmp_path / "versions" / "junk").mkdir()  # no manifest: not an installed version
    with pytest.raises(ModelLoadError) as missing:
        serving_model(str(tmp_path))
    assert str(missing.value) == (
        f"{tmp_path / 'active.json'} is missing (it names no current version) but {tmp_path / 'versions'} holds "
        f"version 3, 4; run `shelfcast store sync --dir {tmp_path}` to activate the channel's version again (from "
        "disk when it is one of them)")
    (tmp_path / "active.json").write_text("{damaged")
    with pytest.raises(ModelLoadError, match=r"active.json is damaged \(it names no current version\)"):
        serving_model(tmp_path)
    (tmp_path / "active.json").write_text(json.dumps({"current": "5", "previous": "4"}))
    with pytest.raises(ModelLoadError) as unusable:
        serving_model(tmp_path)
    assert str(unusable.value) == (
        f"no usable model in {tmp_path}: current version 5 is missing from {tmp_path / 'versions'}; previous "
        f"version 4: model {tmp_path / 'versions' / '4' / 'model.tflite'} does not load: " +
        str(unusable.value).split("does not load: ", 1)[1])
    (tmp_path / "active.json").write_text(json.dumps({"current": "3", "previous": None}))
    with pytest.raises(ModelLoadError, match=r"^no usable model in .*: current version 3: model .* does not load"):
        serving_model(tmp_path)


def test_poll_intervals_and_assignments_are_checked_with_a_message_that_says_how():
    assert [parse_every(t) for t in (" 2M ", "0.5h", "1.5", "1", "0.5s")] == [120, 1800, 1.5, 1, 0.5]
    for text, message in (("0", "--every '0' must be positive"), ("-1s", "--every '-1s' must be positive"),
                          ("", "--every '': write a duration like 15m, 30s or 1h"),
                          ("m", "--every 'm': write a duration like 15m, 30s or 1h")):
        with pytest.raises(ValueError) as bad:
            parse_every(text)
        assert str(bad.value) == message
    for fleet in (["stable"], {"channels": {}}, {"default": 3}):
        with pytest.raises(ValueError) as bad:
            assigned_channel(1, fleet)
        assert str(bad.value) == ('channel assignments need a "default" channel, e.g. {"default": "stable", '
                                  '"channels": {"canary": [1, 2]}}')
    assert assigned_channel(4, {"default": "stable", "channels": None}) == "stable"
    assert assigned_channel(4, {"default": "stable"}) == "stable"
    with pytest.raises(ValueError) as several:
        assigned_channel(1, {"default": "stable", "channels": {"pilot": [1], "canary": [1]}})
    assert str(several.value) == "store 1 is assigned to several channels ['canary', 'pilot']; keep one"
    with pytest.raises(ValueError, match=r"^channel '\.\./etc' is not allowed"):
        assigned_channel(2, {"default": "../etc"})


def signed_folder(tmp_path):
    """Signed delivery metadata (`shelfcast keys init`) in a folder bucket under `tmp_path`: the root a store is
    provisioned with, without an S3 server. Returns the `SignedRepository`."""
    from shelfcast.contract.objects import LocalObjects
    from shelfcast.delivery.signing import KeyRing, SignedRepository

    class Folder(LocalObjects):
        def exists(self, key):
            return self.head(key) is not None

    repository = SignedRepository(Folder(tmp_path / "bucket"), KeyRing(tmp_path / "keys"))
    repository.init()
    return repository


def test_a_store_that_cannot_reach_s3_reports_it_and_keeps_serving(tmp_path, offline):
    """S3 down (nothing listens on the endpoint): the first read of the signed metadata fails, and so does the
    cheap poll of a store that already follows the channel; each says where it stopped and changes nothing."""
    repository = signed_folder(tmp_path)
    store = tmp_path / "store"
    install(store, "3")
    (store / "active.json").write_text(json.dumps({"current": "3", "previous": None}))
    unreachable = ("S3 unreachable or the transfer broke while reading the metadata (EndpointConnectionError: "
                   "Could not connect to the endpoint URL: ")
    result = StoreClient(offline, "stable", store, trusted_root=repository.root_bytes()).sync()
    assert (result.status, result.serving, result.offered) == ("error", "3", None)
    assert result.message.startswith(unreachable) and result.message.endswith("/shelf/metadata/2.root.json\"); "
                                                                               "keeps serving 3")
    (store / "state.json").write_text(json.dumps({
        "channel": "stable", "pointer_version": "3", "timestamp_etag": '"t1"', "metadata_expires": "2999-01-01T00:00:00Z"}))
    stages = []
    polled = StoreClient(offline, "stable", store, on_stage=stages.append).sync()
    assert (polled.status, polled.serving, stages) == ("error", "3", ["metadata"])
    assert polled.message.startswith(unreachable)
    assert polled.message.endswith("/shelf/metadata/timestamp.json\"); keeps serving 3")
    state = json.loads((store / "state.json").read_text())
    assert (state["pointer_version"], state["timestamp_etag"], state["last_status"]) == ("3", '"t1"', "error")
    assert json.loads((store / "active.json").read_text())["current"] == "3"


def test_a_disk_problem_is_reported_and_unwritable_bookkeeping_does_not_stop_the_report(tmp_path, offline):
    (tmp_path / "metadata").write_text("a file where the metadata folder goes")
    result = StoreClient(offline, "stable", tmp_path, trusted_root=b"{}").sync()
    assert (result.status, result.serving) == ("error", None)
    assert result.message == (f"local disk problem in {tmp_path} ([Errno 17] File exists: "
                              f"'{tmp_path / 'metadata'}'); no model installed yet")
    assert json.loads((tmp_path / "state.json").read_text())["last_status"] == "error"
    (tmp_path / "state.json").unlink()
    (tmp_path / "state.json").mkdir()  # the bookkeeping cannot be written: the poll still reports
    again = StoreClient(offline, "stable", tmp_path, trusted_root=b"{}").sync()
    assert (again.status, again.message) == ("error", result.message)
    assert (tmp_path / "state.json").is_dir()


def test_an_s3_error_other_than_a_refusal_is_reported_without_the_credentials_hint(tmp_path):
    """S3 answering 503 to everything (overloaded): a fault a healthy server does not produce on demand, so an
    HTTP server of the test's own gives that answer. The poll reports it and does not send the operator to check
    the store's keys, which are not the problem."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Overloaded(BaseHTTPRequestHandler):
        def _answer(self):
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD = _answer

        def log_message(self, *args):
            pass

    repository = signed_folder(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Overloaded)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = make_s3_client(f"http://127.0.0.1:{server.server_port}", "store", "secret", max_attempts=1)
        result = StoreClient(ObjectStore(client, "shelf"), "stable", tmp_path / "store",
                             trusted_root=repository.root_bytes()).sync()
    finally:
        server.shutdown()
        server.server_close()
    assert (result.status, result.serving, result.offered) == ("error", None, None)
    assert result.message == ("S3 answered HTTP 503 while reading the metadata: s3://shelf/metadata/2.root.json: "
                              "503; the next poll tries again; no model installed yet")
