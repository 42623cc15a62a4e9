"""The benchmark commands as a user runs them: the console shows shelfcast's own lines and tables, while
TensorFlow's, absl's and oneDNN's start-up lines go to the log the command names."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

NOISE = ("oneDNN", "cuInit", "absl", "cuda", "XNNPACK", "Traceback")


def test_bench_compression_prints_only_its_own_lines_and_logs_the_libraries(tmp_path):
    out = tmp_path / "compression.json"
    env = {**os.environ, "SHELFCAST_HOME": str(tmp_path / "home")}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # a user's shell does not set it
    done = subprocess.run(
        [sys.executable, "-m", "shelfcast.cli", "bench", "compression", "--stores", "1", "--items", "1",
         "--seeds", "1", "--configs", "edge", "--variants", "lstm8", "--epochs", "1", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    console = done.stdout + done.stderr
    assert not [word for word in NOISE if word in console], console[-3000:]
    log = tmp_path / "home" / "logs" / "bench.log"
    assert f"the libraries' own output goes to {log}" in done.stdout
    assert "oneDNN" in log.read_text()
    assert "LSTM-8" in done.stdout and f"wrote {out}" in done.stdout
    assert [v["name"] for v in json.loads(out.read_text())["variants"]] == ["LSTM-8"]
