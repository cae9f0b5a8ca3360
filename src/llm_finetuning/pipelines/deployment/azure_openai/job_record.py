"""The job record: what a rerun needs to pick up the billed fine-tuning job.

:class:`JobRecordDataset` saves it atomically the moment the job is created, before it
is polled; :func:`job_identity` is what must be unchanged for the job to be resumed, and
:func:`job_matches` recognises a listed job created for the same request (what an
unanswered request or a killed run created).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from llm_finetuning.datasets._atomic import write_json_atomically

# Request keys that name uploaded files: their ids differ per upload, so a job is
# recognised by the files' content hashes instead.
FILE_ID_KEYS = ("training_file", "validation_file")


def sha256_hex(data: str | bytes) -> str:
    """Hex SHA-256 of ``data`` (text as UTF-8)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()


def upload_filename(stem: str, content: bytes) -> str:
    """``<stem>-<12 hex digits of the content's SHA-256>.jsonl``.

    The name says what the file holds, so an upload that took effect without an answer
    (or before a kill) is recognised by name, size and purpose instead of sent twice.
    """
    return f"{stem}-{sha256_hex(content)[:12]}.jsonl"


def job_identity(
    job_request: Mapping[str, Any],
    training_jsonl: str,
    validation_jsonl: str,
    endpoint: str | None,
) -> dict[str, Any]:
    """What must be unchanged for a recorded fine-tuning job to be resumed.

    The endpoint (another resource holds other jobs), every request key but the file
    ids (model, hyperparameters, seed, suffix) and the SHA-256 of both files' content.
    """
    identity: dict[str, Any] = {
        "endpoint": (endpoint or "").rstrip("/"),
        "training_file_sha256": sha256_hex(training_jsonl),
        "validation_file_sha256": sha256_hex(validation_jsonl),
    }
    for key, value in sorted(job_request.items()):
        if key not in FILE_ID_KEYS:
            identity[f"request.{key}"] = value
    return identity


def identity_changes(
    recorded: Mapping[str, Any], current: Mapping[str, Any]
) -> list[str]:
    """The keys on which two :func:`job_identity` values differ, sorted."""
    return sorted(
        key
        for key in set(recorded) | set(current)
        if recorded.get(key) != current.get(key)
    )


def _same_value(actual: Any, wanted: Any) -> bool:
    """Equal, numbers compared as floats (``2`` and ``2.0``, ``0.1`` and ``0.1000001``)."""
    numbers = (int, float)
    if isinstance(actual, numbers) and isinstance(wanted, numbers):
        return math.isclose(float(actual), float(wanted), rel_tol=1e-9)
    return actual == wanted


def job_matches(job: Any, request: Mapping[str, Any]) -> bool:
    """Whether a listed fine-tuning job was created for ``request``.

    Same training and validation file ids, base model and seed, and every
    hyperparameter asked for; the suffix too where the job shows it (Azure's jobs do,
    OpenAI's schema has none). Hyperparameters left to the service are not compared:
    the job shows the values the service chose.
    """
    suffix = getattr(job, "suffix", None)
    shown = job.hyperparameters
    checks = [
        job.training_file == request.get("training_file"),
        (job.validation_file or None) == (request.get("validation_file") or None),
        job.model == request.get("model"),
        "seed" not in request or _same_value(job.seed, request["seed"]),
        "suffix" not in request or suffix is None or suffix == request["suffix"],
        *(
            _same_value(getattr(shown, key, None), wanted)
            for key, wanted in (request.get("hyperparameters") or {}).items()
        ),
    ]
    return all(checks)


class JobRecordDataset(AbstractDataset[dict[str, Any], dict[str, Any]]):
    """A JSON record on a local (or mounted) filesystem, replaced atomically.

    The Azure OpenAI job record must survive a kill at any moment, so it is saved
    with :func:`write_json_atomically` (``json.JSONDataset`` writes in place). Loading
    a file that does not exist gives ``{}``: the first run has no earlier job.

    A node cannot take and produce the same dataset, so a node that reads the previous
    record and writes the new one uses two entries on the same file, the reading one
    with ``read_only: true``::

        azure_openai_previous_job_record:
          type: llm_finetuning.pipelines.deployment.azure_openai.JobRecordDataset
          filepath: data/06_models/azure_openai/job_record.json
          read_only: true
    """

    def __init__(
        self,
        *,
        filepath: str,
        read_only: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        text = str(filepath)
        if "://" in text and not text.startswith("file://"):
            raise ValueError(
                f"JobRecordDataset filepath {text!r}: only local or mounted paths "
                "(/Volumes/... included) can be replaced atomically"
            )
        self._filepath = Path(text.removeprefix("file://"))
        self._read_only = read_only
        self.metadata = metadata

    def load(self) -> dict[str, Any]:
        if not self._filepath.is_file():
            return {}
        try:
            data = json.loads(self._filepath.read_text("utf-8"))
        except json.JSONDecodeError as error:
            raise DatasetError(
                f"{self._filepath} is not valid JSON ({error}); delete it to start "
                "without a job record"
            ) from error
        if not isinstance(data, dict):
            raise DatasetError(
                f"{self._filepath} holds a JSON {type(data).__name__}, not an object"
            )
        return data

    def save(self, data: dict[str, Any]) -> None:
        if self._read_only:
            raise DatasetError(
                f"This entry only reads {self._filepath} (read_only: true); the "
                "record is written through its other catalog entry"
            )
        if not isinstance(data, Mapping):
            raise DatasetError(
                f"A job record is a JSON object, not {type(data).__name__} "
                f"({self._filepath})"
            )
        write_json_atomically(self._filepath, dict(data))

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "read_only": self._read_only}
