"""The Loader's saved state: its version, the settings that shape the order, and the phases."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bale.loader.order import Phase

_STATE_VERSION = 2


def encode_state(
    epoch: int, phases: Sequence[Phase], settings: Mapping[str, Any]
) -> dict[str, Any]:
    """The state to save: ``epoch``, how it was consumed so far (``phases``), and the
    ``settings`` that shape the order, which a resumed Loader must share."""
    return {
        "version": _STATE_VERSION,
        "epoch": epoch,
        "phases": [[p.world_size, p.workers, p.batch_size, p.batches] for p in phases],
        **settings,
    }


def decode_state(state: Mapping[str, Any], settings: Mapping[str, Any]) -> tuple[int, list[Phase]]:
    """The epoch and phases of a saved state, checked against the current ``settings``."""
    if state.get("version") != _STATE_VERSION:
        raise ValueError(
            f"cannot resume from a loader state of version {state.get('version')!r}; this "
            f"bale writes and reads version {_STATE_VERSION}"
        )
    mismatched = {k: (state.get(k), v) for k, v in settings.items() if state.get(k) != v}
    if mismatched:
        raise ValueError(
            f"cannot resume: the saved state was taken with different settings {mismatched} "
            "(saved, current); the order would differ"
        )
    try:
        phases = [Phase(*(int(x) for x in p)) for p in state["phases"]]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot resume: malformed phases {state.get('phases')!r}") from exc
    return int(state["epoch"]), phases
