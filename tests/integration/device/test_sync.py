"""The store client against the real SeaweedFS server: conditional polls, verified atomic swaps, and every way a
download can go wrong (corrupt, truncated at rest or on the wire, unloadable, S3 stopping half way) refused
while the store keeps serving its model."""

import json
import re
import socket
import threading
import uuid

import numpy as np
import pytest

from shelfcast.delivery.channels import move_pointer
from shelfcast.device.sync import StoreClient, serving_model
from shelfcast.device.forecast import predict_store
from shelfcast.contract.manifest import Pointer, model_key, pointer_key
from shelfcast.delivery.publish import make_manifest, publish_model
from shelfcast.contract.runtime import TFLiteForecaster
from shelfcast.device.cli import main as store_main
from shelfcast.contract.features import build_inputs, calendar_features
from shelfcast.stack.process import free_port
from shelfcast.contract.errors import ModelLoadError

pytestmark = pytest.mark.integration


def _uid() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def channel(trainer_store, tiny_tflite, signing):
    """A fresh channel serving version 1 of a fresh model; returns (name, channel, publish(version, data))."""
    name, channel = f"demand-{_uid()}", f"stable-{_uid()}"

    def publish(version, data=None, move=True):
        data = tiny_tflite["v1"] if data is None else data
        manifest = publish_model(trainer_store, data, make_manifest(
            data, name=name, version=version, input_spec=tiny_tflite["spec"].to_dict(), metrics={"mape_pct": 14.0}))
        if move:
            move_pointer(trainer_store, channel, manifest, action="promote", actor="test", signer=signing)
        return manifest

    publish("1")
    return name, channel, publish


def _forge(trainer_store, name, channel, version, stored_bytes, manifest_of, signing):
    """A damaged bucket: the model object holds `stored_bytes`, the manifest, the pointer and the signatures
    describe `manifest_of`. Written around the publisher on purpose (it refuses such versions), as bit rot after
    signing or a buggy tool would."""
    manifest = make_manifest(manifest_of, name=name, version=version, input_spec={
        "lookback": 14, "scaling": "window_mean", "calendar": True, "sales_min": 0.0, "sales_max": 1.0})
    trainer_store.put(model_key(name, version), stored_bytes)
    trainer_store.put(manifest.key, manifest.to_json())
    pointer = Pointer(channel, name, version, manifest.sha256, manifest.bytes, 99, "forged", "2026-01-01T00:00:00Z",
                      "promote", "test")
    trainer_store.put(pointer_key(channel), pointer.to_json())
    from shelfcast.delivery.signing import move_targets

    signing.sign_targets(move_targets(trainer_store, pointer_key(channel), pointer.to_json(), manifest))


def recorded_store(seaweedfs):
    """The store identity's bucket with every HTTP exchange recorded: (method, path, If-None-Match, status).
    Its boto3 client is its own (not the process-wide one), so the recording sees this test's calls only."""
    import boto3
    from botocore.config import Config

    from shelfcast.contract.objects import ObjectStore
    from tests.conftest import BUCKET, STORE

    client = boto3.client("s3", endpoint_url=seaweedfs.urls["s3"], aws_access_key_id=STORE[0],
                          aws_secret_access_key=STORE[1], region_name="us-east-1",
                          config=Config(s3={"addressing_style": "path"}))
    objects = ObjectStore(client, BUCKET)
    sent, exchanges = [], []

    def before_send(request, **_):
        condition = request.headers.get("If-None-Match")
        condition = condition.decode() if isinstance(condition, bytes) else condition
        sent.append((request.method, request.url.split(f"/{BUCKET}/", 1)[-1], condition))

    def after_call(http_response, **_):
        exchanges.append((*sent.pop(0), http_response.status_code))

    objects.client.meta.events.register("before-send.s3", before_send)
    objects.client.meta.events.register("after-call.s3", after_call)
    return objects, exchanges


def test_sync_installs_then_polls_for_free_then_swaps_keeping_the_previous(seaweedfs, trainer_store, channel, tmp_path,
                                                                          tiny_tflite, signing):
    name, ch, publish = channel
    objects, exchanges = recorded_store(seaweedfs)
    client = StoreClient(objects, ch, tmp_path / "store", trusted_root=signing.trusted_root)
    first = client.sync()
    assert (first.status, first.serving, first.model_bytes) == ("updated", "1", len(tiny_tflite["v1"]))
    exchanges.clear()
    again = client.sync()
    assert (again.status, again.serving, again.model_bytes) == ("unchanged", "1", 0)
    # The whole poll is one conditional HEAD of the signed timestamp, answered 304 Not Modified: nothing read.
    timestamp = trainer_store.head("metadata/timestamp.json").etag
    assert exchanges == [("HEAD", "metadata/timestamp.json", timestamp, 304)]

    publish("2", tiny_tflite["v2"])
    update = client.sync()
    assert (update.status, update.serving, update.model_bytes) == ("updated", "2", len(tiny_tflite["v2"]))
    assert client.active()["previous"] == "1" and client.previous().model_path.read_bytes() == tiny_tflite["v1"]
    assert sorted(p.name for p in (tmp_path / "store" / "versions").iterdir()) == ["1", "2"]

    publish("3")
    client.sync()
    assert sorted(p.name for p in (tmp_path / "store" / "versions").iterdir()) == ["2", "3"]  # two kept


class PowerCut(BaseException):
    """Stops a sync where it is, like a crash: no handler of the sync catches it."""


def test_a_store_killed_between_the_version_rename_and_active_json_serves_the_old_model_then_swaps(
        store_identity_store, channel, tmp_path, tiny_tflite, signing, monkeypatch):
    """The crash is raised where active.json would be rewritten: the new version is already renamed into
    versions/, active.json still names the old one, as a power cut there leaves the folder."""
    name, ch, publish = channel
    folder = tmp_path / "store"
    assert StoreClient(store_identity_store, ch, folder, trusted_root=signing.trusted_root).sync().serving == "1"
    publish("2", tiny_tflite["v2"])

    def cut(self, version, previous):
        raise PowerCut(version)

    monkeypatch.setattr(StoreClient, "_activate", cut)
    with pytest.raises(PowerCut):
        StoreClient(store_identity_store, ch, folder, trusted_root=signing.trusted_root).sync()
    monkeypatch.undo()
    assert sorted(p.name for p in (folder / "versions").iterdir()) == ["1", "2"]
    _, manifest, note = serving_model(folder)
    assert (manifest.version, note) == ("1", None)  # the old model, whole, and nothing to report

    restarted = StoreClient(store_identity_store, ch, folder, trusted_root=signing.trusted_root)
    result = restarted.sync()
    assert (result.status, result.serving, result.model_bytes) == ("updated", "2", 0)  # verified on disk, no download
    assert "already on disk, verified" in result.message
    assert restarted.active()["previous"] == "1" and serving_model(folder)[1].version == "2"


def test_a_damaged_active_json_names_the_models_on_disk_and_the_next_sync_repairs_it(
        store_identity_store, channel, tmp_path, tiny_tflite, signing):
    name, ch, publish = channel
    folder = tmp_path / "store"
    client = StoreClient(store_identity_store, ch, folder, trusted_root=signing.trusted_root)
    client.sync()
    publish("2", tiny_tflite["v2"])
    assert client.sync().serving == "2"
    (folder / "active.json").write_bytes(b'{"current": "2", "previ')  # torn by the disk
    with pytest.raises(ModelLoadError) as refused:
        serving_model(folder)
    assert str(refused.value) == (
        f"{folder / 'active.json'} is damaged (it names no current version) but {folder / 'versions'} holds "
        f"version 1, 2; run `shelfcast store sync --dir {folder}` to activate the channel's version again (from "
        "disk when it is one of them)")
    result = client.sync()
    assert (result.status, result.serving, result.model_bytes) == ("updated", "2", 0)
    assert serving_model(folder)[1].version == "2"


@pytest.mark.parametrize("damage, message", [
    ("corrupt", "model.tflite \\(model\\) is not the signed file \\(Observed hash"),
    ("truncated", "model.tflite \\(model\\) is not the signed file \\(.*[Ll]ength"),
    ("unloadable", "does not load"),
])
def test_a_damaged_version_is_refused_and_the_store_keeps_serving(trainer_store, store_identity_store, channel,
                                                                 tmp_path, tiny_tflite, damage, message, signing):
    name, ch, publish = channel
    client = StoreClient(store_identity_store, ch, tmp_path / "store", trusted_root=signing.trusted_root)
    assert client.sync().serving == "1"
    good = tiny_tflite["v2"]
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    garbage = b"TFL3" + bytes(range(256)) * 8
    stored, described = {"corrupt": (bytes(flipped), good), "truncated": (good[:1000], good),
                         "unloadable": (garbage, garbage)}[damage]
    _forge(trainer_store, name, ch, "2", stored, described, signing)

    result = client.sync()
    assert (result.status, result.serving, result.offered) == ("refused", "1", "2")
    assert re.search(message, result.message), result.message
    assert "keeps serving 1" in result.message
    assert serving_model(tmp_path / "store")[1].version == "1"
    assert not (tmp_path / "store" / ".incoming").exists() and not (tmp_path / "store" / "versions" / "2").exists()

    publish("3", good)  # the next good version gets through
    assert client.sync().serving == "3"


class TruncatingProxy:
    """A TCP proxy to the S3 server that cuts every `model.tflite` response body in half and closes the
    connection: a network fault a healthy S3 server does not produce on demand, made on the wire so that boto3
    and the client see a real short read."""

    def __init__(self, upstream: str):
        self.upstream_port = int(upstream.rsplit(":", 1)[1])
        self.port = free_port()
        self.cut = 0
        self.server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _read_head(sock):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None, b""
            data += chunk
        head, rest = data.split(b"\r\n\r\n", 1)
        return head, rest

    @staticmethod
    def _with_close(head: bytes) -> bytes:
        lines = [l for l in head.split(b"\r\n") if not l.lower().startswith(b"connection:")]
        return b"\r\n".join(lines + [b"Connection: close"]) + b"\r\n\r\n"

    def _serve(self, conn):
        with conn:
            head, body = self._read_head(conn)
            if head is None:
                return
            with socket.create_connection(("127.0.0.1", self.upstream_port)) as up:
                up.sendall(self._with_close(head) + body)
                response = b""
                while chunk := up.recv(65536):
                    response += chunk
            status_head, payload = response.split(b"\r\n\r\n", 1)
            request_line = head.split(b"\r\n", 1)[0]
            if request_line.startswith(b"GET ") and b"model.tflite" in request_line and len(payload) > 1:
                self.cut += 1
                conn.sendall(self._with_close(status_head) + payload[: len(payload) // 2])
            else:
                conn.sendall(self._with_close(status_head) + payload)

    def close(self):
        self.server.close()


def test_a_download_cut_short_on_the_wire_is_refused(seaweedfs, store_identity_store, channel, tmp_path, tiny_tflite, signing):
    from shelfcast.contract.objects import ObjectStore, make_s3_client
    from tests.conftest import BUCKET, STORE

    name, ch, publish = channel
    assert StoreClient(store_identity_store, ch, tmp_path / "store", trusted_root=signing.trusted_root).sync().serving == "1"
    publish("2", tiny_tflite["v2"])
    proxy = TruncatingProxy(seaweedfs.urls["s3"])
    try:
        objects = ObjectStore(make_s3_client(proxy.url, *STORE, max_attempts=1), BUCKET, attempts=1)
        result = StoreClient(objects, ch, tmp_path / "store", trusted_root=signing.trusted_root).sync()
    finally:
        proxy.close()
    assert (result.status, result.serving, result.offered, proxy.cut) == ("error", "1", "2", 1)
    full = len(tiny_tflite["v2"])
    half = full // 2
    assert "transfer broke while reading the model" in result.message
    assert f"IncompleteReadError: {half} read, but total bytes expected is {full}" in result.message
    assert "keeps serving 1" in result.message and serving_model(tmp_path / "store")[1].version == "1"
    assert StoreClient(store_identity_store, ch, tmp_path / "store", trusted_root=signing.trusted_root).sync().serving == "2"  # a clean network


def test_s3_stopping_in_the_middle_of_a_sync(tmp_path, tiny_tflite):
    """A private SeaweedFS (the session's server must stay up): stop it after the pointer and manifest are read,
    before the model is downloaded; restart it; the next sync completes."""
    from shelfcast.delivery.access import LOCAL_KEYS
    from shelfcast.stack.seaweedfs import access_identities
    from shelfcast.stack.seaweedfs import start_seaweedfs
    from shelfcast.contract.objects import ObjectStore, make_s3_client

    data_dir, port = tmp_path / "s3", free_port()
    identities = access_identities("shelfcast", LOCAL_KEYS)
    server = start_seaweedfs(data_dir, identities, s3_port=port)
    try:
        url = server.urls["s3"]
        trainer = ObjectStore(make_s3_client(url, *LOCAL_KEYS["trainer"]), "shelfcast")
        _retry(trainer.ensure_bucket)
        from shelfcast.delivery.signing import KeyRing, SignedRepository

        signer = SignedRepository(trainer, KeyRing(tmp_path / "keys"))
        signer.init()
        root = signer.root_bytes()
        for version, data in (("1", tiny_tflite["v1"]), ("2", tiny_tflite["v2"])):
            manifest = publish_model(trainer, data, make_manifest(data, name="demand", version=version,
                                                                  input_spec=tiny_tflite["spec"].to_dict()))
            if version == "1":
                move_pointer(trainer, "stable", manifest, action="promote", actor="test", signer=signer)
        store = ObjectStore(make_s3_client(url, *LOCAL_KEYS["store"], connect_timeout=1, max_attempts=1),
                            "shelfcast", attempts=2, backoff_s=0.1)
        assert StoreClient(store, "stable", tmp_path / "store", trusted_root=root).sync().serving == "1"
        move_pointer(trainer, "stable", manifest, action="promote", actor="test", signer=signer)

        def stop_before_model(stage):
            if stage == "model":
                server.stop()

        result = StoreClient(store, "stable", tmp_path / "store", trusted_root=root, on_stage=stop_before_model).sync()
        assert (result.status, result.serving, result.offered) == ("error", "1", "2"), result.message
        assert "S3 unreachable" in result.message and "keeps serving 1" in result.message
        forecaster, manifest_now, _ = serving_model(tmp_path / "store")
        assert manifest_now.version == "1"

        server = start_seaweedfs(data_dir, identities, s3_port=port)
        result = _retry(lambda: _synced(StoreClient(store, "stable", tmp_path / "store", trusted_root=root)))
        assert (result.status, result.serving, result.model_bytes) == ("updated", "2", len(tiny_tflite["v2"]))
    finally:
        server.stop()


def _sign_pointer(signing, objects, channel, body):
    """Sign pointer bytes as they are, around `move_pointer` (what a buggy signing tool would do)."""
    from shelfcast.delivery.signing import target_file

    signing.sign_targets({pointer_key(channel): target_file(pointer_key(channel), body)})


def _synced(client):
    result = client.sync()
    if result.status == "error":
        raise RuntimeError(result.message)
    return result


def _retry(fn, attempts=60, delay=0.25):
    import time

    for attempt in range(attempts):
        try:
            return fn()
        except Exception:
            if attempt == attempts - 1:
                raise
            time.sleep(delay)


def _serving_2_after_1(objects, channel, tmp_path, tiny_tflite, signing) -> StoreClient:
    name, ch, publish = channel
    client = StoreClient(objects, ch, tmp_path / "store", trusted_root=signing.trusted_root)
    assert client.sync().serving == "1"
    publish("2", tiny_tflite["v2"])
    assert client.sync().serving == "2"
    return client


def test_rollback_to_the_previous_version_uses_the_copy_on_disk(trainer_store, store_identity_store, channel,
                                                                tmp_path, tiny_tflite, signing):
    name, ch, publish = channel
    client = _serving_2_after_1(store_identity_store, channel, tmp_path, tiny_tflite, signing)
    one = publish("1", move=False)
    move_pointer(trainer_store, ch, one, action="rollback", actor="test", signer=signing)
    result = client.sync()
    assert (result.status, result.serving, result.model_bytes) == ("updated", "1", 0)
    assert client.active() | {"activated_at": None} == {"current": "1", "previous": "2", "channel": ch,
                                                         "activated_at": None}


def test_a_pointer_older_than_the_move_already_followed_is_refused(trainer_store, store_identity_store, channel,
                                                                   tmp_path, tiny_tflite, signing):
    name, ch, publish = channel
    old_pointer = trainer_store.get(pointer_key(ch)).body  # move #1: version 1
    client = _serving_2_after_1(store_identity_store, channel, tmp_path, tiny_tflite, signing)
    trainer_store.put(pointer_key(ch), old_pointer)  # a lagging replica, a cache or a replay puts it back
    assert (client.sync().status, client.current().version) == ("unchanged", "2")  # unsigned: not even read
    _sign_pointer(signing, trainer_store, ch, old_pointer)  # and a signer re-signs it by mistake

    stale = client.sync()
    assert (stale.status, stale.serving, stale.model_bytes) == ("refused", "2", 0)
    assert "is move #1 (version 1) but this store already followed move #2 (version 2)" in stale.message
    assert "state.json" in stale.message
    assert client.active()["current"] == "2"

    # A rollback is a new move with a higher number and is followed; so is the next promotion.
    one = publish("1", move=False)
    move_pointer(trainer_store, ch, one, action="rollback", actor="test", signer=signing)
    assert (client.sync().status, client.current().version) == ("updated", "1")
    publish("3")
    assert (client.sync().status, client.current().version) == ("updated", "3")


def test_a_pointer_naming_an_unsafe_path_is_refused_and_the_loop_goes_on(trainer_store, store_identity_store,
                                                                       channel, tmp_path, tiny_tflite, signing):
    name, ch, publish = channel
    client = _serving_2_after_1(store_identity_store, channel, tmp_path, tiny_tflite, signing)
    good = Pointer.from_json(trainer_store.get(pointer_key(ch)).body)
    escape = Pointer(ch, name, "../../../etc", good.sha256, good.bytes, good.seq + 1, "forged",
                     "2026-01-01T00:00:00Z", "promote", "test")
    trainer_store.put(pointer_key(ch), escape.to_json())  # a buggy tool, signed by mistake
    _sign_pointer(signing, trainer_store, ch, escape.to_json())

    polls = client.run(every_s=0.01, max_polls=2)
    assert [(p.status, p.serving) for p in polls] == [("refused", "2"), ("refused", "2")]
    assert "version '../../../etc' is not allowed" in polls[0].message and "keeps serving 2" in polls[0].message
    assert not (tmp_path / "etc").exists() and client.active()["current"] == "2"


def test_the_polling_loop_reports_an_unexpected_failure_and_polls_again(store_identity_store, channel, tmp_path,
                                                                       tiny_tflite, monkeypatch, signing):
    """An in-process fault: every failure the server or the disk can cause is caught inside `sync`, so a bug in
    it is injected to show that the daemon reports it and keeps polling instead of dying."""
    name, ch, publish = channel
    client = _serving_2_after_1(store_identity_store, channel, tmp_path, tiny_tflite, signing)
    real_sync, calls = client.sync, []

    def flaky_sync():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug in this poll")
        return real_sync()

    monkeypatch.setattr(client, "sync", flaky_sync)
    polls = client.run(every_s=0.01, max_polls=2)
    assert [(p.status, p.serving) for p in polls] == [("error", "2"), ("unchanged", "2")]
    assert "RuntimeError: a bug in this poll; keeps serving 2" in polls[0].message


def _sales_csv(path, days, items=(1, 2, 3), store=4, gap_item=None, seed=0):
    rng = np.random.default_rng(seed)
    dates = np.arange(np.datetime64("2017-12-31") - days + 1, np.datetime64("2018-01-01"))
    rows, truth = ["date,store,item,sales"], {}
    for item in items:
        sales = rng.poisson(20 + 10 * item, size=days)
        truth[item] = (dates, sales)
        rows += [f"{d},{store},{item},{s}" for d, s in zip(dates, sales) if not (item == gap_item and d == dates[-3])]
    path.write_text("\n".join(rows) + "\n")
    return truth


def test_predict_forecasts_tomorrow_per_item_from_raw_sales(store_identity_store, channel, tmp_path, tiny_tflite, signing):
    name, ch, _ = channel
    StoreClient(store_identity_store, ch, tmp_path / "store", trusted_root=signing.trusted_root).sync()
    truth = _sales_csv(tmp_path / "recent.csv", days=20, gap_item=3)
    report = predict_store(tmp_path / "store", tmp_path / "recent.csv", store_id=4)

    spec = tiny_tflite["spec"]
    model = TFLiteForecaster(tiny_tflite["v1"])
    expected = {}
    for item in (1, 2):
        dates, sales = truth[item]
        raw = sales[-14:][None, :].astype(float)
        x = build_inputs(raw, dates[-14:][None, :], spec)
        expected[item] = float(spec.unscale(model.predict(x), raw)[0])
    assert [(f.item, f.date) for f in report.forecasts] == [(1, "2018-01-01"), (2, "2018-01-01")]
    assert {f.item: f.sales for f in report.forecasts} == pytest.approx(expected, rel=1e-6)
    assert report.version == "1" and len(report.skipped) == 1 and "store 4 item 3: 1 of the last 14 days missing" in report.skipped[0]


def test_predict_falls_back_to_the_previous_model_when_the_current_file_is_damaged(store_identity_store, channel,
                                                                                  tmp_path, tiny_tflite, signing):
    client = _serving_2_after_1(store_identity_store, channel, tmp_path, tiny_tflite, signing)
    client.current().model_path.write_bytes(b"damaged on disk")
    _sales_csv(tmp_path / "recent.csv", days=14)
    report = predict_store(tmp_path / "store", tmp_path / "recent.csv")
    assert report.version == "1" and len(report.forecasts) == 3
    assert "current version 2" in report.note and "serving previous version 1" in report.note
    # the next sync notices the damaged file is not the pointer's model and restores it
    assert client.sync().serving == "2"


def test_store_cli_sync_once_loop_and_predict(seaweedfs, channel, tmp_path, monkeypatch, capsys, signing):
    from tests.conftest import BUCKET, STORE

    name, ch, publish = channel
    for key, value in {"SHELFCAST_S3_ENDPOINT_URL": seaweedfs.urls["s3"], "SHELFCAST_BUCKET": BUCKET,
                       "SHELFCAST_STORE_ACCESS_KEY": STORE[0], "SHELFCAST_STORE_SECRET_KEY": STORE[1]}.items():
        monkeypatch.setenv(key, value)
    folder = str(tmp_path / "store")
    (tmp_path / "root.json").write_bytes(signing.trusted_root)
    assert store_main(["sync", "--store-id", "4", "--channel", ch, "--dir", folder]) == 1  # no trusted root yet
    assert "--trusted-root" in capsys.readouterr().out
    assert store_main(["sync", "--store-id", "4", "--channel", ch, "--dir", folder, "--trusted-root",
                       str(tmp_path / "root.json")]) == 0
    assert "status=updated serving=1" in capsys.readouterr().out
    assert store_main(["sync", "--store-id", "4", "--channel", ch, "--dir", folder, "--every", "0.05s",
                       "--max-polls", "2", "--json"]) == 0
    polls = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [p["status"] for p in polls] == ["unchanged", "unchanged"] and polls[0]["model_bytes"] == 0

    assignments = tmp_path / "fleet.json"
    assignments.write_text(json.dumps({"default": "nowhere", "channels": {ch: [4, 5]}}))
    assert store_main(["sync", "--store-id", "4", "--assignments", str(assignments), "--dir", folder]) == 0
    assert f"channel={ch} status=unchanged" in capsys.readouterr().out

    _sales_csv(tmp_path / "recent.csv", days=15)
    assert store_main(["predict", "--dir", folder, "--sales", str(tmp_path / "recent.csv"),
                       "--out", str(tmp_path / "forecast.csv")]) == 0
    lines = (tmp_path / "forecast.csv").read_text().splitlines()
    assert lines[0] == "date,store,item,forecast,model_version" and len(lines) == 4
    assert lines[1].startswith("2018-01-01,4,1,") and lines[1].endswith(",1")

    # A device with room for 1,000 bytes refuses version 2 from its manifest, before downloading the model.
    publish("2")
    assert store_main(["sync", "--store-id", "4", "--channel", ch, "--dir", folder, "--max-model-bytes", "1000"]) == 1
    out = capsys.readouterr().out
    assert "status=refused serving=1 offered=2 model_bytes=0" in out
    assert "is over this store's limit of 1,000 (--max-model-bytes); not downloaded" in out
    assert store_main(["sync", "--store-id", "4", "--channel", ch, "--dir", folder, "--max-model-bytes", "0"]) == 2

    monkeypatch.setenv("SHELFCAST_STORE_SECRET_KEY", "wrong")
    assert store_main(["sync", "--store-id", "4", "--channel", ch, "--dir", folder]) == 1
    assert "status=error serving=1" in capsys.readouterr().out


def test_predict_with_a_profile_scaled_model_uses_the_manifests_pooled_factors(store_identity_store, trainer_store,
                                                                              tmp_path, tiny_tflite, signing):
    """A model trained on profile scaling ships its 19 pooled factors in the manifest's input spec; the store
    divides every input day by the window's level times its factor and multiplies the output by the factor of
    the forecast day (Monday 2018-01-01, January), with nothing but the manifest and the raw sales."""
    from dataclasses import replace

    from tests.conftest import signed_channel

    weekday = (0.7, 0.9, 1.0, 1.0, 1.0, 1.1, 1.3)
    month = (1.2,) + (0.98,) * 10 + (0.9,)
    spec = replace(tiny_tflite["spec"], scaling="profile", weekday_factors=weekday, month_factors=month)
    _, ch = signed_channel(trainer_store, signing, tiny_tflite, input_spec=spec)
    StoreClient(store_identity_store, ch, tmp_path / "store", trusted_root=signing.trusted_root).sync()
    truth = _sales_csv(tmp_path / "recent.csv", days=20, items=(1, 2))
    report = predict_store(tmp_path / "store", tmp_path / "recent.csv", store_id=4)

    model = TFLiteForecaster(tiny_tflite["v1"])
    for forecast in report.forecasts:
        dates, sales = truth[forecast.item]
        dates, raw = dates[-14:], sales[-14:].astype(float)
        factor = np.array([weekday[(d.astype(np.int64) + 3) % 7] * month[d.astype("datetime64[M]").astype(int) % 12]
                           for d in dates])
        level = raw.sum() / factor.sum()
        x = np.concatenate([(raw / (level * factor))[None, :, None], calendar_features(dates[None, :])], axis=2)
        expected = float(model.predict(x.astype(np.float32))[0]) * level * weekday[0] * month[0]
        assert forecast.date == "2018-01-01" and forecast.sales == pytest.approx(max(expected, 0.0), rel=1e-5)
    assert len(report.forecasts) == 2
