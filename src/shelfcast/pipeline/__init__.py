"""The nightly pipeline around the flows: its configuration, the retrain steps, the CLI and the main job.

`config` holds `RetrainConfig` (the variant list, the window, the task runner), `nightly` the plain functions
the retrain flow's tasks call, `cli` the `stack`, `ingest`, `retrain`, `serve` and `run` commands, and `job`
the main job behind `make run`.
"""
