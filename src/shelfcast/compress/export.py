"""Export trained LSTMs as deployable `.tflite` files, in a child process.

The smallest real files come from the fused `UNIDIRECTIONAL_SEQUENCE_LSTM` op, which the converter emits for a
`tf_keras` (Keras 2) twin of the model with batch size 1; its weights are copied from the Keras 3 model (the
layouts are identical). Full-integer calibration can crash the converting process, so conversions run in a
child Python: a crash becomes a `ConversionError` with its reason, never the death of the caller. The child
stays up between conversions (`Converter`: TensorFlow is imported once per trainer process, not once per
variant) and a new one starts after a crash or a timeout. `export_many` converts several models in one call; if
the child dies, the models it had not finished are retried one at a time, so one bad conversion cannot sink
the others.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shelfcast.contract.errors import ConversionError
from shelfcast.contract.features import InputSpec

QUANTIZATIONS = ("float32", "int8")


@dataclass
class ExportJob:
    weights: list[np.ndarray]
    units: int
    spec: InputSpec
    quantization: str
    out_path: Path
    calibration: np.ndarray | None = None
    dropout: float = 0.2

    def __post_init__(self) -> None:
        self.out_path = Path(self.out_path)
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization={self.quantization!r}; choose one of {QUANTIZATIONS}")

    @property
    def label(self) -> str:
        return f"{self.quantization} conversion of LSTM-{self.units} ({self.out_path.name})"


def _run_child(jobs: list[ExportJob], tmp: Path, timeout_s: float) -> tuple[int, str]:
    manifest = []
    for index, job in enumerate(jobs):
        arrays = {f"w{i}": w for i, w in enumerate(job.weights)}
        if job.calibration is not None:
            arrays["calibration"] = np.asarray(job.calibration, dtype=np.float32)
        npz = tmp / f"job{index}.npz"
        np.savez(npz, **arrays)
        manifest.append(
            {
                "npz": str(npz),
                "units": job.units,
                "lookback": job.spec.lookback,
                "n_features": job.spec.n_features,
                "quantization": job.quantization,
                "dropout": job.dropout,
                "n_weights": len(job.weights),
                "out": str(job.out_path),
            }
        )
    jobs_file = tmp / "jobs.json"
    jobs_file.write_text(json.dumps(manifest))
    return CONVERTER.run(jobs_file, timeout_s)


class Converter:
    """One long-lived converting child, fed a jobs file per line; restarted when it died or timed out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._replies = None
        self._stderr = None

    def _start(self) -> None:
        read_fd, write_fd = os.pipe()
        env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "shelfcast.compress._convert_worker", "--serve", str(write_fd)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr, text=True, env=env,
            pass_fds=(write_fd,))
        os.close(write_fd)
        self._replies = os.fdopen(read_fd, "r")

    def _last_error_line(self) -> str:
        self._stderr.seek(0)
        lines = [line for line in self._stderr.read().strip().splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None

    def run(self, jobs_file: Path, timeout_s: float) -> tuple[int, str]:
        """(0, "") when every job of the file was written; else a non-zero code and the reason."""
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._start()
            try:
                self._process.stdin.write(f"{jobs_file}\n")
                self._process.stdin.flush()
            except BrokenPipeError:
                pass  # it died on its way up; the reply below says how
            ready, _, _ = select.select([self._replies], [], [], timeout_s)
            if not ready:
                self.stop()
                return -9, f"took over {timeout_s:.0f}s"
            reply = self._replies.readline().strip()
            if reply == "ok":
                return 0, ""
            if reply.startswith("error "):
                return 1, reply.removeprefix("error ")
            code = self._process.wait()  # the pipe closed: the child is gone
            reason = (f"the converter crashed with signal {-code}" if code < 0
                      else self._last_error_line() or f"exit code {code}")
            self._process = None
            return code or 1, reason


CONVERTER = Converter()
atexit.register(CONVERTER.stop)


def export_many(jobs: list[ExportJob], timeout_s: float = 900.0) -> list[Path | ConversionError]:
    """Convert every job; each result is the written path or the `ConversionError` that explains the failure."""
    results: list[Path | ConversionError | None] = [None] * len(jobs)
    for index, job in enumerate(jobs):
        job.out_path.parent.mkdir(parents=True, exist_ok=True)
        job.out_path.unlink(missing_ok=True)
        if job.quantization == "int8" and (job.calibration is None or len(job.calibration) == 0):
            results[index] = ConversionError(f"{job.label} needs calibration inputs from the training windows")
    pending = [i for i, r in enumerate(results) if r is None]
    if pending:
        with tempfile.TemporaryDirectory(prefix="shelfcast-convert-") as tmp:
            code, reason = _run_child([jobs[i] for i in pending], Path(tmp), timeout_s)
        for i in pending:
            if jobs[i].out_path.exists():
                results[i] = jobs[i].out_path
        unfinished = [i for i in pending if results[i] is None]
        if code == 0 and unfinished:
            reason = "the converter wrote no file"
        if len(pending) == 1 or code == 0:
            for i in unfinished:
                results[i] = ConversionError(f"{jobs[i].label} failed: {reason}")
        else:
            for i in unfinished:  # isolate the failure: one child per remaining job
                results[i] = export_many([jobs[i]], timeout_s)[0]
    return results


def export_tflite(
    weights: list[np.ndarray],
    units: int,
    spec: InputSpec,
    quantization: str,
    calibration: np.ndarray | None,
    out_path: str | Path,
    dropout: float = 0.2,
    timeout_s: float = 600.0,
) -> Path:
    """Write one `.tflite` file and return its path; raise `ConversionError` naming the reason on failure."""
    result = export_many([ExportJob(weights, units, spec, quantization, Path(out_path), calibration, dropout)], timeout_s)[0]
    if isinstance(result, ConversionError):
        raise result
    return result
