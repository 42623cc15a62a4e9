"""Hand the night's candidates over to the gate and promotion (`flows/promote.py`, when it is installed)."""

from __future__ import annotations

import importlib
import importlib.util


def promotion_available() -> bool:
    from shelfcast.pipeline.runners import ensure_flows_importable

    ensure_flows_importable()
    try:
        return importlib.util.find_spec("flows.promote") is not None
    except ModuleNotFoundError:
        return False


def hand_over(candidates, night: str, settings) -> dict:
    """Run promotion on `candidates`; a dict saying what happened (or that promotion is not there yet)."""
    if not promotion_available():
        return {"status": "skipped", "reason": "flows/promote.py is not installed yet"}
    module = importlib.import_module("flows.promote")
    return module.promote_candidates(candidates, night=night, settings=settings)
