"""Publishing and promotion against the real SeaweedFS server: immutable versions, racing promotions, a trainer
killed half way, the nightly promotion with a real MLflow registry (SQLite backend)."""

import json
import os
import re
import subprocess
import sys
import threading
import uuid
from dataclasses import replace

import pytest

from shelfcast.delivery.channels import PromotionRefused, read_head, read_log
from shelfcast.contract.manifest import Manifest, log_key, manifest_key, model_key, pointer_key, sha256_hex
from shelfcast.delivery.publish import make_manifest, move_channel, promote_version, publish_model
from shelfcast.delivery.promotion import promote_night
from shelfcast.delivery.registry import MlflowRegistry
from shelfcast.delivery.selection import SelectionPolicy
from shelfcast.tracking import Candidate
from shelfcast.contract.errors import IntegrityError, ModelLoadError, PromotionConflict

pytestmark = pytest.mark.integration

POLICY = SelectionPolicy(max_tflite_bytes=100_000, max_latency_us=50_000, min_canary_seconds=0)


def _uid() -> str:
    return uuid.uuid4().hex[:8]


def _publish(objects, name, version, data, spec, **metrics):
    manifest = make_manifest(data, name=name, version=version, input_spec=spec.to_dict(),
                             metrics=metrics or {"mape_pct": 14.0}, mlflow_run_id=f"run-{version}")
    return publish_model(objects, data, manifest)


def _candidate(name, version, path, spec, mape, **metrics):
    return Candidate(name=name, version=version, metrics={"mape_pct": mape, **metrics},
                     tflite_bytes=os.path.getsize(path), latency_us=80.0, builtin_ops_only=True,
                     variant=f"lstm4-v{version}", run_id=None, tflite_path=str(path),
                     details={"input_spec": spec.to_dict()})


def test_a_version_is_written_once_with_a_complete_manifest(trainer_store, tiny_tflite):
    name, spec, data = f"demand-{_uid()}", tiny_tflite["spec"], tiny_tflite["v1"]
    manifest = _publish(trainer_store, name, "1", data, spec, mape_pct=14.2, smape_pct=13.9)

    stored = Manifest.from_json(trainer_store.get(manifest_key(name, "1")).body)
    assert trainer_store.get(model_key(name, "1")).body == data
    assert (stored.version, stored.sha256, stored.bytes, stored.format) == ("1", sha256_hex(data), len(data), "tflite")
    assert stored.input_spec == {"lookback": 14, "scaling": "window_mean", "calendar": True,
                                 "sales_min": spec.sales_min, "sales_max": spec.sales_max,
                                 "weekday_factors": [1.0] * 7, "month_factors": [1.0] * 12}  # neutral: no profile
    assert stored.metrics == {"mape_pct": 14.2, "smape_pct": 13.9} and stored.mlflow_run_id == "run-1"
    assert stored.code_version["shelfcast"] and len(stored.code_version["git_commit"]) == 40

    assert _publish(trainer_store, name, "1", data, spec).sha256 == stored.sha256  # a rerun completes, no error
    with pytest.raises(IntegrityError, match="versions are immutable"):
        _publish(trainer_store, name, "1", tiny_tflite["v2"], spec)
    assert trainer_store.get(model_key(name, "1")).body == data


def test_an_unloadable_model_is_never_published(trainer_store, tiny_tflite):
    name = f"demand-{_uid()}"
    garbage = b"TFL3" + os.urandom(3000)
    with pytest.raises(ModelLoadError, match="does not load"):
        _publish(trainer_store, name, "1", garbage, tiny_tflite["spec"])
    assert trainer_store.head(model_key(name, "1")) is None


class ClaimsAtOnce:
    """The real bucket, except that a claim of a promotion-log entry first waits at `barrier`: every racer has
    then read the same head and checked its version, and all of them claim the same entry together (threads
    started together alone often finish one promotion before the next one reads the head)."""

    def __init__(self, objects, barrier: threading.Barrier):
        self.objects, self.barrier = objects, barrier

    def __getattr__(self, name):
        return getattr(self.objects, name)

    def put_if_absent(self, key, body, content_type="application/octet-stream"):
        if key.startswith("promotions/") and "/log/" in key:
            self.barrier.wait(timeout=60)
        return self.objects.put_if_absent(key, body, content_type)


@pytest.mark.parametrize("racers", [2, 4])
def test_two_promotions_at_once_exactly_one_wins(trainer_store, tiny_tflite, racers):
    """Three rounds on one channel; in each, `racers` promotions decided against the same head claim the next
    move at the same moment: one moves the channel, each other one is refused with the winner named."""
    name, channel, spec = f"demand-{_uid()}", f"canary-{_uid()}", tiny_tflite["spec"]
    base = _publish(trainer_store, name, "0", tiny_tflite["v1"], spec)
    move_channel(trainer_store, channel, base, action="bootstrap", actor="test", reason="base")
    served = ["0"]
    for round_ in range(1, 4):
        manifests = [_publish(trainer_store, name, f"r{round_}-{i}", tiny_tflite["v1"], spec) for i in range(racers)]
        objects, wins, conflicts = ClaimsAtOnce(trainer_store, threading.Barrier(racers)), [], []

        def promote(manifest):
            try:
                move_channel(objects, channel, manifest, action="promote", actor=f"racer-{manifest.version}",
                             reason="race", expect=served[-1])
                wins.append(manifest.version)
            except PromotionConflict as exc:
                conflicts.append(str(exc))

        threads = [threading.Thread(target=promote, args=(m,)) for m in manifests]
        [t.start() for t in threads]
        [t.join() for t in threads]

        assert len(wins) == 1 and len(conflicts) == racers - 1, (round_, wins, conflicts)
        head = read_head(trainer_store, channel)
        assert head.version == wins[0] and head.seq == round_ + 1
        winner = head.pointer
        assert conflicts == [
            f"channel {channel}: move #{round_ + 1} was taken by another promotion (racer-{winner.version}: "
            f"promote to {winner.version} at {winner.moved_at}); this one changed nothing"
        ] * (racers - 1)
        served.append(winner.version)
    assert trainer_store.head(model_key(name, served[-1])) and trainer_store.head(manifest_key(name, served[-1]))
    assert [e.version for e in read_log(trainer_store, channel)] == served


def test_a_pointer_never_names_a_missing_object(trainer_store, tiny_tflite):
    name, channel = f"demand-{_uid()}", f"canary-{_uid()}"
    ghost = make_manifest(tiny_tflite["v1"], name=name, version="9", input_spec=tiny_tflite["spec"].to_dict())
    with pytest.raises(PromotionRefused, match="does not exist; publish version 9 first"):
        move_channel(trainer_store, channel, ghost, action="promote", actor="test", reason="")
    assert read_head(trainer_store, channel).pointer is None
    assert trainer_store.head(pointer_key(channel)) is None


CRASHING_PROMOTER = """
import json, os, signal, sys
from shelfcast.contract.objects import ObjectStore, make_s3_client
import shelfcast.delivery.promotion as promotion
from shelfcast.delivery.selection import SelectionPolicy
from shelfcast.tracking import Candidate

endpoint, key, secret, bucket, name, channel, model_path, spec, crash_at = sys.argv[1:]
objects = ObjectStore(make_s3_client(endpoint, key, secret), bucket)
die = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
if crash_at == "before-manifest":  # model written, its manifest not yet
    real_once = ObjectStore.put_if_absent
    ObjectStore.put_if_absent = lambda self, k, *a, **kw: die() if k.endswith("manifest.json") else real_once(self, k, *a, **kw)
elif crash_at == "before-pointer":   # model and manifest written, channel not moved yet
    promotion.move_channel = die
elif crash_at == "after-claim":    # move claimed in the promotion log, latest.json not rewritten yet
    real = ObjectStore.put_if_match
    ObjectStore.put_if_match = lambda self, k, *a, **kw: die() if k.endswith("latest.json") else real(self, k, *a, **kw)
candidate = Candidate(name=name, version="2", metrics={"mape_pct": 13.0, "naive_mape_pct": 16.7},
                      tflite_bytes=os.path.getsize(model_path), latency_us=80.0, builtin_ops_only=True,
                      tflite_path=model_path, details={"input_spec": json.loads(spec)})
outcome = promotion.promote_night(objects, [candidate], actor="nightly", canary=channel, stable=channel + "-stable",
                                  policy=SelectionPolicy(max_tflite_bytes=100000, max_latency_us=50000))
print(json.dumps(outcome.to_dict()))
"""


@pytest.mark.parametrize("crash_at", ["before-manifest", "before-pointer", "after-claim"])
def test_trainer_killed_between_model_and_pointer(seaweedfs, trainer_store, tiny_tflite, tmp_path, crash_at):
    """A real promoter process killed (SIGKILL) after the model and before its manifest, after both before the
    channel's claim, or after the claim before the pointer: stores keep the previous version, nothing can point
    at a version without its manifest, and the rerun completes."""
    from tests.conftest import TRAINER

    name, channel, spec = f"demand-{_uid()}", f"canary-{_uid()}", tiny_tflite["spec"]
    move_channel(trainer_store, channel, _publish(trainer_store, name, "1", tiny_tflite["v1"], spec),
                 action="bootstrap", actor="test", reason="first")
    (tmp_path / "v2.tflite").write_bytes(tiny_tflite["v2"])
    script = tmp_path / "promoter.py"
    script.write_text(CRASHING_PROMOTER)

    def run(mode):
        return subprocess.run([sys.executable, str(script), seaweedfs.urls["s3"], *TRAINER, trainer_store.bucket,
                               name, channel, str(tmp_path / "v2.tflite"), json.dumps(spec.to_dict()), mode],
                              capture_output=True, text=True, timeout=120)

    killed = run(crash_at)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert trainer_store.get(model_key(name, "2")).body == tiny_tflite["v2"]
    assert trainer_store.exists(manifest_key(name, "2")) is (crash_at != "before-manifest")
    if crash_at == "before-manifest":  # a half-published version can be named by no channel
        half = make_manifest(tiny_tflite["v2"], name=name, version="2", input_spec=spec.to_dict())
        with pytest.raises(PromotionRefused, match=f"{re.escape(manifest_key(name, '2'))} does not exist; "
                                                   "publish version 2 first"):
            move_channel(trainer_store, channel, half, action="promote", actor="test", reason="")
    pointer = read_head(trainer_store, channel, heal=False).pointer
    assert pointer.version == "1"  # stores still get the previous version
    assert trainer_store.exists(log_key(channel, 2)) is (crash_at == "after-claim")

    rerun = run("none")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    outcome = json.loads(rerun.stdout.strip().splitlines()[-1])
    head = read_head(trainer_store, channel)
    assert head.version == "2" and head.seq == 2
    assert [e.seq for e in read_log(trainer_store, channel)] == [1, 2]
    assert outcome["status"] == ("already serving" if crash_at == "after-claim" else "promoted")


def test_force_needs_a_reason_and_is_logged_with_who_and_why(trainer_store, tiny_tflite):
    name, uid, spec = f"demand-{_uid()}", _uid(), tiny_tflite["spec"]
    canary, stable = f"canary-{uid}", f"stable-{uid}"
    _publish(trainer_store, name, "1", tiny_tflite["v1"], spec)
    strict = SelectionPolicy(max_tflite_bytes=100_000, max_latency_us=50_000, min_canary_seconds=3600)
    kwargs = dict(policy=strict, canary=canary, stable=stable)
    with pytest.raises(PromotionRefused, match="never served on canary"):
        promote_version(trainer_store, stable, name, "1", actor="ana", **kwargs)
    with pytest.raises(Exception, match="needs a reason"):
        promote_version(trainer_store, stable, name, "1", actor="ana", force=True, **kwargs)
    small = SelectionPolicy(max_tflite_bytes=1000, max_latency_us=50_000)
    with pytest.raises(PromotionRefused, match="over the budget of 1,000.*Override with --force"):
        promote_version(trainer_store, canary, name, "1", actor="ana", policy=small, canary=canary, stable=stable)

    result = promote_version(trainer_store, stable, name, "1", actor="ana@hq", force=True,
                             reason="stores without a model since the outage", **kwargs)
    assert result.moved and result.action == "force"
    (entry,) = read_log(trainer_store, stable)
    assert (entry.actor, entry.action) == ("ana@hq", "force")
    assert entry.reason == ("stores without a model since the outage "
                            "[forced past: version 1 never served on canary; promote it to canary first]")
    assert not promote_version(trainer_store, stable, name, "1", actor="ana", force=True, reason="again",
                               **kwargs).moved


class _FailingAliases(MlflowRegistry):
    """MLflow answering selections but failing alias moves: a fault of the MLflow side, injected in-process."""

    def set_alias(self, alias, version):
        raise ConnectionError("MLflow went away")


@pytest.fixture
def mlflow_registry(tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    name = f"demand-{_uid()}"
    client.create_registered_model(name)
    experiment = client.create_experiment("promotion-test", artifact_location=(tmp_path / "art").as_uri())
    runs = {}
    for version in ("1", "2", "3"):
        run = client.create_run(experiment).info.run_id
        client.create_model_version(name, source=(tmp_path / "art" / version).as_uri(), run_id=run)
        runs[version] = run
    return client, name, runs


def test_nightly_promotion_bootstrap_canary_then_stable_with_mlflow(trainer_store, tiny_tflite, tmp_path,
                                                                    mlflow_registry):
    client, name, runs = mlflow_registry
    uid, spec = _uid(), tiny_tflite["spec"]
    canary, stable = f"canary-{uid}", f"stable-{uid}"
    for version, key in (("1", "v1"), ("2", "v2"), ("3", "v2")):
        (tmp_path / f"{version}.tflite").write_bytes(tiny_tflite[key])
    registry = MlflowRegistry(client, name)
    aliases = {stable: "champion", canary: "canary"}
    night = dict(actor="nightly", policy=POLICY, registry=registry, aliases=aliases, canary=canary, stable=stable)

    first = [replace(_candidate(name, "1", tmp_path / "1.tflite", spec, 14.0, naive_mape_pct=16.7), run_id=runs["1"]),
             _candidate(name, "2", tmp_path / "2.tflite", spec, 17.0, naive_mape_pct=16.7)]
    one = promote_night(trainer_store, first, night="2026-01-01", **night)
    assert one.status == "promoted" and one.decision.action == "bootstrap" and one.canary.version == "1"
    assert one.stable is None and read_head(trainer_store, stable).pointer is None
    assert one.published == {"1": "published", "2": "published"}
    assert registry.get_alias("canary") == "1" and registry.get_alias("champion") is None
    rejected = client.get_model_version(name, "2").tags
    assert rejected["shelfcast.selection"] == "rejected" and "14.00 vs 17.00" in rejected["shelfcast.selection_reason"]
    assert client.get_run(runs["1"]).data.tags["shelfcast.selection"] == "chosen"
    record = json.loads(trainer_store.get(one.decision_key).body)
    assert record["chosen"]["version"] == "1" and record["rejections"][0]["version"] == "2"
    assert json.loads(trainer_store.get(manifest_key(name, "2")).body)["details"]["selection"].startswith("rejected:")

    second = [_candidate(name, "3", tmp_path / "3.tflite", spec, 13.5, naive_mape_pct=16.5)]
    two = promote_night(trainer_store, second, night="2026-01-02", **night)
    assert two.canary.version == "3" and two.stable.version == "1" and two.stable.action == "advance"
    assert registry.get_alias("champion") == "1" and registry.get_alias("canary") == "3"

    # Champion v1 now on stable: a candidate worse than it on the same window is kept out of canary.
    worse = [_candidate(name, "2", tmp_path / "2.tflite", spec, 17.0, naive_mape_pct=16.5, champion_mape_pct=14.1)]
    three = promote_night(trainer_store, worse, night="2026-01-03", **night)
    assert three.status == "kept" and read_head(trainer_store, canary).version == "3"
    assert "worse than champion v1's 14.10 on the same window" in three.decision.rejections[0].reason
    assert three.stable.version == "3"  # v3 served on canary since night 2

    # MLflow failing the alias move: the pointer moves, the error is reported, the next run repairs the alias.
    broken = dict(night, registry=_FailingAliases(client, name))
    rolled = promote_version(trainer_store, canary, name, "1", force=True, reason="test", actor="ana",
                             registry=broken["registry"], aliases=aliases, canary=canary, stable=stable)
    assert rolled.moved and "MLflow went away" in rolled.alias_error and registry.get_alias("canary") == "3"
    repaired = promote_night(trainer_store, [], night="2026-01-04", **night)
    assert registry.get_alias("canary") == "1"
    assert any("repaired alias 'canary': 3 -> 1" in note for note in repaired.notes)
