"""The checkpoint folder: which checkpoint to resume from, and tidying it.

The Trainer writes ``checkpoint-<step>`` folders file by file and ``trainer_state.json``
last, so a run killed while saving leaves a folder without it (or with a truncated
one): only folders with a readable state and their weights and optimizer count as
complete. ``run.json`` beside them records which run the checkpoints belong to (a
fingerprint of the data, model and parameters) and whether it finished, so ``resume:
auto`` never continues someone else's run or re-enters a finished one. A run finishes
when its model has been saved (:func:`finish_saved_model`), not when training ends.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_WEIGHT_FILES = (
    "model.safetensors",
    "adapter_model.safetensors",
    "model.safetensors.index.json",
)


def fingerprint(facts: dict[str, Any]) -> str:
    """A stable hash of JSON-serialisable facts."""
    encoded = json.dumps(facts, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def checkpoint_folders(folder: Path) -> list[Path]:
    """``checkpoint-<step>`` subfolders, highest step first."""
    if not folder.is_dir():
        return []
    found = [
        (int(match.group(1)), path)
        for path in folder.iterdir()
        if path.is_dir() and (match := _CHECKPOINT.match(path.name))
    ]
    return [path for _, path in sorted(found, reverse=True)]


def is_complete(checkpoint: Path) -> bool:
    """Whether a checkpoint was written to the end (state, weights and optimizer)."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    has_weights = any((checkpoint / name).is_file() for name in _WEIGHT_FILES)
    return has_weights and (checkpoint / "optimizer.pt").is_file()


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The complete checkpoint with the highest step, if any."""
    return next((c for c in checkpoint_folders(folder) if is_complete(c)), None)


def resume_point(folder: Path, run_fingerprint: str, resume: str) -> Path | None:
    """The checkpoint to resume from, or ``None`` to start afresh (read-only).

    Args:
        folder: The checkpoint folder.
        run_fingerprint: Fingerprint of this run's data, model and parameters.
        resume: ``auto``, ``never`` or the path of a checkpoint folder.
    """
    if resume == "never":
        return None
    if resume != "auto":
        checkpoint = Path(resume)
        if not is_complete(checkpoint):
            raise ValueError(
                f"training.checkpoints.resume: '{checkpoint}' is not a complete "
                "checkpoint folder (trainer_state.json, weights and optimizer.pt)"
            )
        return checkpoint
    run = _read_run(folder)
    if run.get("fingerprint") != run_fingerprint or run.get("finished", False):
        return None
    return last_complete_checkpoint(folder)


def prepare(folder: Path, run_fingerprint: str, resume_from: Path | None) -> None:
    """Make ``folder`` ready for this run (main process only).

    Starting afresh removes the ``checkpoint-*`` subfolders of any earlier run (and
    nothing else); resuming removes only the incomplete ones, which the Trainer would
    otherwise treat as the newest. Then ``run.json`` is written for this run.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for checkpoint in checkpoint_folders(folder):
        if resume_from is None or not is_complete(checkpoint):
            logger.info("Removing checkpoint %s of an earlier run", checkpoint)
            shutil.rmtree(checkpoint)
    _write_run(folder, {"fingerprint": run_fingerprint, "finished": False})


def finish(folder: Path, run_fingerprint: str, *, keep: bool) -> None:
    """Mark the run finished (so it is not resumed) and delete its checkpoints."""
    _write_run(folder, {"fingerprint": run_fingerprint, "finished": True})
    if not keep:
        for checkpoint in checkpoint_folders(folder):
            shutil.rmtree(checkpoint)


def finish_saved_model(model_metadata: Mapping[str, Any]) -> Path | None:
    """End the training run a model was saved from; returns its checkpoint folder.

    Called once the model folder is completely saved, never before: until then the
    run's checkpoints are what a rerun resumes from. Nothing happens when the metadata
    names no checkpoint folder, or when the folder now belongs to another run (a model
    loaded and saved again must not end someone else's training).
    """
    facts = model_metadata.get("checkpoints")
    run_fingerprint = model_metadata.get("run_fingerprint")
    if not isinstance(facts, Mapping) or not run_fingerprint:
        return None
    folder = Path(facts["dir"])
    run = _read_run(folder)
    if run.get("fingerprint") != run_fingerprint or run.get("finished", False):
        return None
    finish(folder, run_fingerprint, keep=bool(facts.get("keep_after_success")))
    logger.info("Model saved: training run %s finished (%s)", run_fingerprint, folder)
    return folder


def _read_run(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / RUN_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _write_run(folder: Path, run: dict[str, Any]) -> None:
    # Write beside and rename: a kill mid-write must not leave a truncated run.json.
    scratch = folder / f".{RUN_FILE}.tmp"
    scratch.write_text(json.dumps(run, indent=2))
    scratch.replace(folder / RUN_FILE)
