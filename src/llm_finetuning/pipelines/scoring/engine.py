"""Score one batch of rows, and the local engine that scores a whole input chunk by chunk.

:func:`score_batch` is what both engines run on their rows (the local engine on a
chunk, the Spark engine on each Arrow batch of a partition): it checks the texts,
cuts them like training (:mod:`llm_finetuning.truncation`: ``model.max_length``,
``model.truncation``, ``model.head_tokens``), and runs the
evaluation pipeline's batched inference
(:func:`~llm_finetuning.pipelines.evaluation.inference.predict_probabilities`: longest
first, padded per batch). Heavy imports (torch, transformers) live here, not in
``nodes.py``, so listing the pipelines stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llm_finetuning.console import show_progress
from llm_finetuning.datasets.model_folder import TextClassifier
from llm_finetuning.datasets.text_source import TEXT_TYPE_COLUMN
from llm_finetuning.pipelines.evaluation.inference import (
    check_classifier,
    predict_probabilities,
)
from llm_finetuning.pipelines.scoring.params import ScoringParams
from llm_finetuning.truncation import Truncation

logger = logging.getLogger(__name__)

ROW_ID = "row_id"
PREDICTED_LABEL, LABEL_NAME = "predicted_label", "label_name"
MODEL_VERSION, SCORED_AT, INVALID_REASON = (
    "model_version",
    "scored_at",
    "invalid_reason",
)
DUPLICATES_SHOWN = 20


@dataclass
class ScoringModel:
    """A classifier ready to score, and how the output names it.

    ``location`` is where another process (a Spark worker) loads the same model: a
    model folder or an MLflow model URI. ``runtime``, when set, runs the model instead
    of torch (an :class:`~.onnx_runtime.OnnxClassifier`: ``scoring.runtime``).
    ``truncation`` is how texts are cut: the ``model`` parameters, or what an MLflow
    model was logged with.
    """

    classifier: TextClassifier
    identity: str
    location: str | None = None
    runtime: Any = None
    truncation: Truncation = Truncation(512)

    @property
    def label_names(self) -> list[str]:
        return [str(name) for name in self.classifier.label_names]


def folder_fingerprint(classifier: TextClassifier) -> str:
    """``model_folder:<hash>`` of the folder's ``llm_finetuning.json`` metadata.

    A folder without metadata (saved elsewhere) is named by its config instead.
    """
    facts = classifier.metadata or {"config": classifier.model.config.to_dict()}
    digest = hashlib.sha256(
        json.dumps(facts, sort_keys=True, default=str).encode()
    ).hexdigest()
    return f"model_folder:{digest[:16]}"


def registered_identity(uri: str) -> str:
    """``models:/<name>/<version>`` for a registry URI (an alias is resolved)."""
    if not uri.startswith("models:/"):
        return uri
    from mlflow import MlflowClient

    name_and_ref = uri[len("models:/") :]
    if "@" in name_and_ref:
        name, alias = name_and_ref.split("@", 1)
        version = MlflowClient().get_model_version_by_alias(name, alias).version
        return f"models:/{name}/{version}"
    return uri


def load_mlflow_classifier(uri: str) -> TextClassifier:
    """The transformers model and tokenizer inside a pyfunc logged by the deployment."""
    import mlflow

    python_model = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    model = getattr(python_model, "model", None)
    tokenizer = getattr(python_model, "tokenizer", None)
    if model is None or tokenizer is None:
        raise ValueError(
            f"The MLflow model {uri} is not this project's text classifier "
            "(llm_finetuning.serving_model.TextClassifierModel): its python model "
            f"{type(python_model).__name__} has no transformers model and tokenizer"
        )
    metadata: dict[str, Any] = {"uri": uri}
    served_cut = getattr(python_model, "truncation", None)
    if served_cut is not None:  # models logged before it was configurable have none
        metadata["truncation"] = served_cut.as_config()
    return TextClassifier(model=model, tokenizer=tokenizer, metadata=metadata)


def resolve_model(
    fine_tuned_model: TextClassifier,
    params: ScoringParams,
    truncation: Truncation,
    folder: str | None = None,
) -> ScoringModel:
    """The catalog's model folder, or the MLflow model ``params.model`` names.

    The folder is scored with ``truncation`` (the ``model`` parameters). An MLflow
    model is scored as it was logged to cut texts, so its scores equal its served
    answers; a difference from ``truncation`` is logged.
    """
    if params.uses_catalog_model:
        classifier = fine_tuned_model
        scoring_model = ScoringModel(
            classifier, folder_fingerprint(classifier), folder, truncation=truncation
        )
    else:
        identity = registered_identity(params.model)
        classifier = load_mlflow_classifier(identity)
        served = classifier.metadata.get("truncation")
        cut = (
            Truncation.from_config(served, truncation.max_length)
            if served
            else truncation
        )
        if cut != truncation:
            logger.warning(
                "%s was logged to cut texts as %s, the model parameters say %s: "
                "scoring it as it serves",
                identity,
                cut.as_config(),
                truncation.as_config(),
            )
        scoring_model = ScoringModel(classifier, identity, identity, truncation=cut)
    tokenizer = classifier.tokenizer
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    check_classifier(classifier.model, tokenizer, scoring_model.label_names)
    return scoring_model


def output_schema(label_names: list[str], id_field: pa.Field) -> pa.Schema:
    """The ``scored_texts`` columns: id, prediction, probabilities, model, time, reason."""
    return pa.schema(
        [
            id_field,
            pa.field(PREDICTED_LABEL, pa.int64()),
            pa.field(LABEL_NAME, pa.string()),
            *(pa.field(f"prob_{name}", pa.float64()) for name in label_names),
            pa.field(MODEL_VERSION, pa.string()),
            pa.field(SCORED_AT, pa.timestamp("us", tz="UTC")),
            pa.field(INVALID_REASON, pa.string()),
        ]
    )


def invalid_reason(value: Any) -> str | None:
    """Why a value cannot be scored: ``null``, ``empty``, ``not a string (<type>)``."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "null"
    if not isinstance(value, str):
        return f"not a string ({type(value).__name__})"
    if not value.strip():
        return "empty"
    return None


def score_batch(
    batch: pa.RecordBatch,
    *,
    model: ScoringModel,
    text_column: str,
    id_column: str | None,
    first_row: int,
    batch_size: int,
    device: str = "auto",
    scored_at: datetime | None = None,
) -> tuple[pa.Table, dict[str, Any]]:
    """Predictions for every row of ``batch``, in its order, and what was counted.

    Rows whose text is null, empty or not a string get null predictions and an
    ``invalid_reason``; the others are cut to ``model.truncation`` like the training
    data. ``first_row`` is the batch's position in the input (for ``row_id`` when
    there is no id column).
    """
    texts = batch.column(text_column).to_pylist()
    n = len(texts)
    reasons = [invalid_reason(text) for text in texts]
    if TEXT_TYPE_COLUMN in batch.schema.names:  # JSON Lines: non-strings read as null
        for i, kind in enumerate(batch.column(TEXT_TYPE_COLUMN).to_pylist()):
            if kind is not None:
                reasons[i] = f"not a string ({kind})"
    valid = [i for i, reason in enumerate(reasons) if reason is None]
    labels = model.label_names
    probabilities = np.full((n, len(labels)), np.nan)
    truncated = 0
    if valid:
        tokenizer = model.classifier.tokenizer
        encoded = model.truncation.encode(tokenizer, [texts[i] for i in valid])
        truncated = encoded.truncated
        columns = {
            "input_ids": encoded.input_ids,
            "attention_mask": encoded.attention_mask,
            "length": [len(ids) for ids in encoded.input_ids],
        }
        if model.runtime is not None:
            probabilities[valid] = model.runtime.predict_probabilities(
                columns, batch_size=batch_size
            )
        else:
            from datasets import Dataset

            probabilities[valid] = predict_probabilities(
                model.classifier.model,
                tokenizer,
                Dataset.from_dict(columns),
                batch_size=batch_size,
                device=device,
            )
    is_valid = np.zeros(n, dtype=bool)
    is_valid[valid] = True
    predicted = np.full(n, -1, dtype=np.int64)
    if valid:
        predicted[valid] = probabilities[valid].argmax(axis=1)
    if id_column is None:
        ids: pa.Array = pa.array(np.arange(first_row, first_row + n), pa.int64())
        id_field = pa.field(ROW_ID, pa.int64())
    else:
        ids = batch.column(id_column)
        id_field = batch.schema.field(id_column)
    when = scored_at or datetime.now(UTC)
    columns = [
        ids,
        pa.array(predicted, pa.int64(), mask=~is_valid),
        pa.array(
            [labels[p] if p >= 0 else None for p in predicted.tolist()], pa.string()
        ),
        *(
            pa.array(probabilities[:, k], pa.float64(), mask=~is_valid)
            for k in range(len(labels))
        ),
        pa.array([model.identity] * n, pa.string()),
        pa.array([when] * n, pa.timestamp("us", tz="UTC")),
        pa.array(reasons, pa.string()),
    ]
    table = pa.Table.from_arrays(columns, schema=output_schema(labels, id_field))
    stats = {
        "rows": n,
        "scored": len(valid),
        "truncated": truncated,
        "invalid": {r: reasons.count(r) for r in sorted({r for r in reasons if r})},
    }
    return table, stats


def merge_stats(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum per-chunk counts."""
    invalid: dict[str, int] = {}
    for part in parts:
        for reason, count in part.get("invalid", {}).items():
            invalid[reason] = invalid.get(reason, 0) + count
    return {
        "rows": sum(p.get("rows", 0) for p in parts),
        "scored": sum(p.get("scored", 0) for p in parts),
        "truncated": sum(p.get("truncated", 0) for p in parts),
        "invalid": dict(sorted(invalid.items())),
    }


def duplicate_ids(ids: pa.ChunkedArray | pa.Array) -> dict[str, Any]:
    """How many ids occur more than once, the rows they cover, and a few of them."""
    counts = pc.value_counts(ids.drop_null() if hasattr(ids, "drop_null") else ids)
    values, occurrences = counts.field("values"), counts.field("counts")
    repeated = pc.greater(occurrences, 1)
    dup_values = pc.filter(values, repeated).to_pylist()
    dup_counts = pc.filter(occurrences, repeated).to_pylist()
    shown = sorted(zip(dup_values, dup_counts, strict=True), key=lambda vc: -vc[1])
    return {
        "duplicated_ids": len(dup_values),
        "rows_with_duplicated_ids": int(sum(dup_counts)),
        "examples": [
            {"id": value, "rows": count} for value, count in shown[:DUPLICATES_SHOWN]
        ],
        "null_ids": int(ids.null_count),
    }


def job_key(facts: dict[str, Any]) -> str:
    return hashlib.sha256(
        json.dumps(facts, sort_keys=True, default=str).encode()
    ).hexdigest()[:16]


def score_locally(
    source: Any,
    model: ScoringModel,
    store: Any,
    params: ScoringParams,
) -> tuple[Any, dict[str, Any]]:
    """Score ``source`` chunk by chunk into ``store``; the assembled chunks and the report.

    Chunks an earlier, killed run of the same input, model and settings completed
    are kept, not scored again.
    """
    from tqdm.auto import tqdm

    if params.num_threads:
        import torch

        torch.set_num_threads(params.num_threads)
    required = [params.text_column] + ([params.id_column] if params.id_column else [])
    source.check_columns(required)
    facts = {
        "input": source.fingerprint(),
        "model": model.identity,
        "text_column": params.text_column,
        "id_column": params.id_column,
        "chunk_size": params.chunk_size,
        "max_length": model.truncation.max_length,
        "labels": model.label_names,
    }
    if model.truncation.strategy != "head":  # head: the keys of earlier runs still hold
        facts["truncation"] = model.truncation.as_config()
    if params.runtime != "torch":  # int8 probabilities differ: never mix the chunks
        facts["runtime"] = params.runtime
    job = store.job(job_key(facts), facts)
    done = job.completed()
    if done:
        logger.info(
            "Resuming: %d chunk(s) of %s already scored in %s",
            len(done),
            source.describe(),
            job.folder,
        )
    total = source.count_rows()
    started = time.perf_counter()
    scored_now = 0
    n_chunks = 0
    with tqdm(
        total=total,
        unit=" reviews",
        desc="Scoring",
        disable=not show_progress(params.progress_bar),
        dynamic_ncols=True,
    ) as bar:
        for index, chunk in enumerate(source.iter_chunks(required, params.chunk_size)):
            n_chunks = index + 1
            if index not in done:
                table, stats = score_batch(
                    chunk,
                    model=model,
                    text_column=params.text_column,
                    id_column=params.id_column,
                    first_row=index * params.chunk_size,
                    batch_size=params.batch_size,
                    device=params.device,
                )
                job.write(index, table, stats)
                scored_now += chunk.num_rows
            bar.update(chunk.num_rows)
    if n_chunks == 0:
        raise ValueError(f"{source.describe()} holds no rows")
    elapsed = time.perf_counter() - started
    stats = merge_stats([job.stats(i) for i in range(n_chunks)])
    report: dict[str, Any] = {
        "source": source.describe(),
        "model": model.identity,
        "engine": "local",
        "runtime": params.runtime,
        "truncation": model.truncation.as_config(),
        "chunks": n_chunks,
        "chunks_resumed": len(done & set(range(n_chunks))),
        **stats,
        "seconds": round(elapsed, 3),
        "reviews_per_second": round(scored_now / elapsed, 2) if elapsed else None,
    }
    if params.id_column:
        report["duplicates"] = duplicate_ids(job.read_column(params.id_column))
    log_report(report)
    return job.assembled(n_chunks), report


def log_report(report: dict[str, Any]) -> None:
    logger.info(
        "Scored %d of %d rows of %s with %s (%d cut to %s)",
        report["scored"],
        report["rows"],
        report["source"],
        report["model"],
        report["truncated"],
        report.get("truncation"),
    )
    if report["invalid"]:
        logger.warning(
            "%d row(s) not scored (null prediction, reason in invalid_reason): %s",
            sum(report["invalid"].values()),
            report["invalid"],
        )
    duplicates = report.get("duplicates") or {}
    if duplicates.get("duplicated_ids"):
        logger.warning(
            "%d id(s) occur more than once (%d rows), e.g. %s",
            duplicates["duplicated_ids"],
            duplicates["rows_with_duplicated_ids"],
            [e["id"] for e in duplicates["examples"][:5]],
        )
