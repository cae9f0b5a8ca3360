"""Lineage: which data and which model every output came from, across separate runs.

``kedro run --pipelines data_processing``, then ``training``, then ``evaluation`` are
three MLflow runs. What ties them together:

- the **data fingerprint**: a hash of the tokenized splits' token ids and labels
  (:func:`data_fingerprint`), the same whether a run saved or loaded them;
- the **model fingerprint**: a hash of the model folder's weight files
  (:func:`weights_fingerprint`), recorded in the folder's metadata when it is saved,
  with the data fingerprint and the MLflow run that trained it (:data:`METADATA_KEY`);
- the **manifest** (catalog entry ``lineage_manifest``): every output path a run wrote
  (model folder, predictions, JSON/CSV reports, PNG plots) mapped to the
  :class:`Lineage` of that run. An output whose data or model fingerprint differs from
  the current run's is stale (:func:`stale_outputs`) and listed in the run summary.

Only the standard library is imported here; callers pass the loaded objects.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llm_finetuning.datasets._atomic import write_json_atomically
from llm_finetuning.pipelines.training.checkpoints import fingerprint

METADATA_KEY = "lineage"  # in the model folder's llm_finetuning.json
TAG_PREFIX = "lineage."
# Tags set on the training run by each later run that used its model.
USED_BY_TAG = "lineage.used_by."
EVALUATION_RUN_TAG = "lineage.evaluation_run_id"
# Metrics of an evaluation run copied into the training run of the model it evaluated.
COPIED_METRIC_PREFIX = "evaluation."
MANIFEST_FORMAT = 1
WEIGHT_SUFFIXES = (".safetensors", ".bin")
_TOKEN_COLUMNS = ("input_ids", "labels")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Lineage:
    """Where a run's outputs came from.

    Attributes:
        data_fingerprint: Hash of the tokenized splits the run used (or inherited).
        model_fingerprint: Hash of the weights of the model it trained or used.
        training_run_id: MLflow run that trained that model.
        produced_by_run_id: MLflow run that wrote the outputs.
        pipelines: The pipelines that run ran.
        created: When the run ended (UTC, ISO 8601).
    """

    data_fingerprint: str | None = None
    model_fingerprint: str | None = None
    training_run_id: str | None = None
    produced_by_run_id: str | None = None
    pipelines: list[str] = field(default_factory=list)
    created: str = field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds")
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def without_model(self) -> Lineage:
        """The lineage of an output that does not depend on the model (a baseline)."""
        return replace(self, model_fingerprint=None, training_run_id=None)

    def tags(self) -> dict[str, str]:
        """MLflow tags ``lineage.<field>`` for the fingerprints and run ids known."""
        facts = {
            "data_fingerprint": self.data_fingerprint,
            "model_fingerprint": self.model_fingerprint,
            "training_run_id": self.training_run_id,
        }
        return {TAG_PREFIX + k: v for k, v in facts.items() if v}


def split_digest(split: Any, columns: Sequence[str]) -> str:
    """SHA-256 of the values of ``columns`` of a ``datasets.Dataset``, in row order.

    Integer columns are hashed as int64; list columns (token ids) as their lengths
    then their flattened values, so ``[[1, 2], [3]]`` and ``[[1], [2, 3]]`` differ.
    """
    import numpy as np

    table = split.with_format("arrow")[:]  # the logical rows, any index mapping applied
    digest = hashlib.sha256()
    for name in columns:
        array = table.column(name).combine_chunks()
        if hasattr(array, "value_lengths"):  # a list column
            digest.update(np.asarray(array.value_lengths(), dtype=np.int64).tobytes())
            array = array.flatten()
        digest.update(np.asarray(array, dtype=np.int64).tobytes())
    return digest.hexdigest()


def data_fingerprint(splits: Mapping[str, Any]) -> str:
    """Fingerprint of tokenized splits (a ``DatasetDict``): rows, token ids, labels."""
    facts = {}
    for name in sorted(splits):
        split = splits[name]
        columns = [c for c in _TOKEN_COLUMNS if c in split.column_names]
        facts[name] = {"rows": split.num_rows, "sha256": split_digest(split, columns)}
    return fingerprint(facts)


def weights_fingerprint(folder: str | os.PathLike) -> str | None:
    """Hash of a model folder's weight files (names and bytes); None if it has none."""
    folder = Path(folder)
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)
    )
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}:{path.stat().st_size}:".encode())
        with path.open("rb") as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()[:16]


# The manifest: {"format": 1, "outputs": {path: Lineage.to_dict()}}.


def read_manifest(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The outputs recorded in the manifest at ``path`` (empty if absent or unreadable).

    An unreadable manifest only loses the stale check, so it is treated as empty
    rather than failing the run; the next run rewrites it.
    """
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    outputs = manifest.get("outputs") if isinstance(manifest, dict) else None
    return dict(outputs) if isinstance(outputs, dict) else {}


def write_manifest(
    path: str | os.PathLike, outputs: Mapping[str, Mapping[str, Any]]
) -> None:
    """Write the manifest atomically (a reader sees the old or the new one)."""
    document = {"format": MANIFEST_FORMAT, "outputs": dict(sorted(outputs.items()))}
    write_json_atomically(Path(path), document)


def record_outputs(
    outputs: Mapping[str, Mapping[str, Any]],
    written: Mapping[str, Lineage],
    exists: Callable[[str], bool] = os.path.exists,
) -> dict[str, dict[str, Any]]:
    """``outputs`` with each path ``written`` now set to its lineage.

    Entries of files that are gone are dropped: nothing is left to flag.
    """
    updated = {p: dict(entry) for p, entry in outputs.items() if exists(p)}
    updated.update({path: lineage.to_dict() for path, lineage in written.items()})
    return updated


def is_stale(entry: Mapping[str, Any], current: Lineage) -> bool:
    """Whether an output's data or model differs from the current run's.

    Only fingerprints both sides know are compared: a split written by
    ``data_processing`` (no model) is not stale because a model was retrained.
    """
    for key in ("data_fingerprint", "model_fingerprint"):
        theirs, mine = entry.get(key), getattr(current, key)
        if theirs and mine and theirs != mine:
            return True
    return False


def stale_outputs(
    outputs: Mapping[str, Mapping[str, Any]],
    current: Lineage,
    written: Iterable[str] = (),
) -> list[str]:
    """Recorded outputs, other than ``written`` now, from an earlier model or data."""
    fresh = set(written)
    return sorted(
        path
        for path, entry in outputs.items()
        if path not in fresh and is_stale(entry, current)
    )
