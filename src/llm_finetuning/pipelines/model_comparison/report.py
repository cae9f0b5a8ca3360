"""Every model scored on the same test rows: the comparison report, as JSON and Markdown.

A served or hosted model is often asked about a sample of the test set only, and a
file left by an earlier run may hold another split. So the report first finds the rows
every compared model has answered (the intersection of their ``row_id`` s), then scores
each model on exactly those rows with the project's one metrics module
(:mod:`llm_finetuning.metrics`): accuracy and macro-F1 with bootstrap intervals, and the
reference model minus each other model with a *paired* bootstrap interval. It says
how many rows that is, which models had more rows than that, and which were left out
and why (not run, no row in common, true labels that disagree).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from llm_finetuning.metrics import (
    format_interval,
    paired_bootstrap_difference,
    score_predictions,
)
from llm_finetuning.predictions import LABEL, ROW_ID, validate_predictions

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """One model offered to the comparison.

    Attributes:
        key: Short stable id (JSON and MLflow keys): ``fine_tuned``, ``tfidf_logreg``...
        name: How the tables name it.
        predictions: Its predictions frame (:mod:`llm_finetuning.predictions`), or
            ``None`` when it did not run.
        latency_ms: Milliseconds per prediction where measured (one review a request).
        latency_source: What ``latency_ms`` is (e.g. "p50 of 12 requests").
        training_cost: ``{"usd": ..., "seconds": ..., "text": ...}`` where known.
        cost_per_1000_predictions: ``{"usd": ..., "text": ...}`` where known.
    """

    key: str
    name: str
    predictions: pd.DataFrame | None
    latency_ms: float | None = None
    latency_source: str | None = None
    training_cost: dict[str, Any] | None = None
    cost_per_1000_predictions: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def _present(candidate: Candidate) -> bool:
    frame = candidate.predictions
    return frame is not None and not frame.empty


def _labels(frame: pd.DataFrame) -> pd.Series:
    return frame.set_index(ROW_ID)[LABEL]


def common_rows(
    candidates: Sequence[Candidate], label_names: Sequence[str], reference: str
) -> tuple[list[Candidate], dict[str, str], np.ndarray]:
    """The models that can be compared, why the others cannot, and their common rows.

    A model is left out when it has no predictions (it did not run), when its true
    labels disagree with the reference's on a shared row (predictions of another test
    split, e.g. a file an earlier run left), or when it shares no row with the models
    kept before it (the reference first, then in the given order).

    Raises:
        PredictionsError: a predictions frame breaks the contract (it names the model).
    """
    order = sorted(candidates, key=lambda c: c.key != reference)
    kept: list[Candidate] = []
    left_out: dict[str, str] = {}
    common: np.ndarray | None = None
    anchor: pd.Series | None = None
    for candidate in order:
        if not _present(candidate):
            left_out[candidate.key] = "not run: no predictions"
            continue
        frame = candidate.predictions
        validate_predictions(frame, label_names, name=f"{candidate.key} predictions")
        labels = _labels(frame)
        if anchor is not None:
            shared = anchor.index.intersection(labels.index)
            disagree = int((anchor[shared] != labels[shared]).sum())
            if disagree:
                left_out[candidate.key] = (
                    f"its true labels disagree with {kept[0].name}'s on {disagree} of "
                    f"{len(shared)} shared rows: predictions of another test split "
                    "(a file from an earlier run?)"
                )
                continue
        ids = np.sort(frame[ROW_ID].to_numpy(dtype=np.int64))
        narrowed = ids if common is None else np.intersect1d(common, ids)
        if narrowed.size == 0:
            left_out[candidate.key] = (
                f"no test row in common with {', '.join(c.name for c in kept)}"
            )
            continue
        common = narrowed
        if anchor is None:
            anchor = labels
        kept.append(candidate)
    position = {c.key: i for i, c in enumerate(candidates)}
    kept.sort(key=lambda c: position[c.key])
    return kept, left_out, common if common is not None else np.array([], np.int64)


def _on_rows(frame: pd.DataFrame, row_ids: np.ndarray) -> pd.DataFrame:
    subset = frame[frame[ROW_ID].isin(row_ids)]
    return subset.sort_values(ROW_ID).reset_index(drop=True)


def _interval(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    if not entry:
        return None
    return {k: entry[k] for k in ("value", "ci_low", "ci_high")}


def compare_on_common_rows(
    candidates: Sequence[Candidate],
    label_names: Sequence[str],
    reference: str,
    *,
    n_bootstrap: int,
    confidence_level: float,
    seed: int,
) -> dict[str, Any]:
    """Score every comparable model on the rows they all answered (JSON-able dict).

    ``reference`` is the key of the model the others are measured against (the
    fine-tuned model); without it the report has no differences.
    """
    kept, left_out, row_ids = common_rows(candidates, label_names, reference)
    frames = {c.key: _on_rows(c.predictions, row_ids) for c in kept}
    has_reference = reference in frames
    models: dict[str, Any] = {}
    for candidate in kept:
        frame = frames[candidate.key]
        scored = score_predictions(
            frame,
            label_names,
            n_bootstrap=n_bootstrap,
            confidence_level=confidence_level,
            seed=seed,
        )
        difference = None
        if has_reference and candidate.key != reference:
            difference = paired_bootstrap_difference(
                frames[reference],
                frame,
                label_names,
                n_bootstrap=n_bootstrap,
                confidence_level=confidence_level,
                seed=seed,
            )
        models[candidate.key] = {
            "name": candidate.name,
            "n_rows": len(frame),
            "n_rows_available": len(candidate.predictions),
            "accuracy": _interval(scored["metrics"]["accuracy"]),
            "f1_macro": _interval(scored["metrics"]["f1_macro"]),
            "roc_auc": _interval(scored["metrics"].get("roc_auc")),
            "n_invalid_predictions": scored["n_invalid_predictions"],
            "reference_minus_model": difference,
            "latency_ms_per_prediction": candidate.latency_ms,
            "latency_source": candidate.latency_source,
            "training_cost": candidate.training_cost,
            "cost_per_1000_predictions": candidate.cost_per_1000_predictions,
            "source": candidate.predictions.attrs.get("source"),
            "notes": list(candidate.notes),
        }
    names = {c.key: c.name for c in candidates}
    limited = [k for k, m in models.items() if m["n_rows_available"] > len(row_ids)]
    return {
        "reference": reference if has_reference else None,
        "reference_name": names.get(reference),
        "confidence_level": confidence_level,
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "n_common_rows": int(len(row_ids)),
        "common_row_ids_sha256": hashlib.sha256(
            np.asarray(row_ids, dtype="<i8").tobytes()
        ).hexdigest(),
        "limited_to_common_rows": limited,
        "models": models,
        "not_compared": {
            k: {"name": names[k], "reason": r} for k, r in left_out.items()
        },
    }


# --- Markdown -------------------------------------------------------------------------


def _cost(entry: dict[str, Any] | None) -> str:
    return entry["text"] if entry else "n/a"


def _latency(row: dict[str, Any]) -> str:
    value = row["latency_ms_per_prediction"]
    if value is None:
        return "n/a"
    source = row.get("latency_source")
    return f"{value:.1f}" + (f" ({source})" if source else "")


def comparison_markdown(comparison: dict[str, Any]) -> str:
    """The report as a Markdown page: the table, then what limited or left out models."""
    level = f"{comparison['confidence_level']:.0%}"
    reference = comparison["reference_name"] if comparison["reference"] else None
    models = comparison["models"]
    lines = ["# Model comparison", ""]
    if not models:
        lines.append("No model has predictions yet: nothing to compare.")
    else:
        lines += [
            f"Every model below is scored on the same **{comparison['n_common_rows']} "
            f"test rows** (the rows all of them answered); values with {level} "
            f"bootstrap intervals ({comparison['n_bootstrap']} resamples, seed "
            f"{comparison['seed']}).",
        ]
        if reference:
            lines += [
                f"The difference columns are {reference} minus the model, with paired "
                f"bootstrap intervals: an interval above 0 means {reference} is "
                "better beyond resampling noise.",
            ]
        else:
            lines.append("The reference model did not run: no differences.")
        minus = f"{reference} minus model" if reference else "difference"
        lines += [
            "",
            f"| model | accuracy | macro F1 | {minus}, accuracy | {minus}, macro F1 | "
            "invalid answers | latency, ms/prediction | training cost | "
            "cost per 1,000 predictions |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for key, row in models.items():
            difference = row["reference_minus_model"]
            if key == comparison["reference"]:
                accuracy_gap = f1_gap = "(reference)"
            else:
                accuracy_gap = format_interval((difference or {}).get("accuracy"))
                f1_gap = format_interval((difference or {}).get("f1_macro"))
            lines.append(
                f"| {row['name']} | {format_interval(row['accuracy'])} | {format_interval(row['f1_macro'])} | "
                f"{accuracy_gap} | {f1_gap} | {row['n_invalid_predictions']} | "
                f"{_latency(row)} | {_cost(row['training_cost'])} | "
                f"{_cost(row['cost_per_1000_predictions'])} |"
            )
    lines += _limits(comparison)
    return "\n".join(lines) + "\n"


def _limits(comparison: dict[str, Any]) -> list[str]:
    """The sections on rows, models left out, sources and notes."""
    models = comparison["models"]
    lines: list[str] = []
    limited = comparison["limited_to_common_rows"]
    if limited:
        lines += ["", "## Rows", ""]
        lines += [
            f"- {models[k]['name']}: {comparison['n_common_rows']} of its "
            f"{models[k]['n_rows_available']} rows"
            for k in limited
        ]
    if comparison["not_compared"]:
        lines += ["", "## Not compared", ""]
        lines += [
            f"- {entry['name']}: {entry['reason']}"
            for entry in comparison["not_compared"].values()
        ]
    sources = [
        (row["name"], row["source"]) for row in models.values() if row.get("source")
    ]
    if sources:
        lines += ["", "## Predictions read", ""]
        lines += [
            f"- {name}: `{source['filepath']}`"
            + (f", written {source['modified']}" if source.get("modified") else "")
            for name, source in sources
        ]
    notes = [(row["name"], note) for row in models.values() for note in row["notes"]]
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {name}: {note}" for name, note in notes]
    return lines


# --- MLflow ---------------------------------------------------------------------------


def comparison_metrics(comparison: dict[str, Any]) -> dict[str, float]:
    """Flat scalars for MLflow: ``<model>.accuracy`` (+ ``.ci_low``/``.ci_high``),
    ``<model>.f1_macro``, ``<model>.reference_minus_model.accuracy``, ...,
    ``<model>.latency_ms``, ``<model>.training_cost_usd``, and ``n_common_rows``."""
    flat: dict[str, float] = {"n_common_rows": float(comparison["n_common_rows"])}

    def add_interval(prefix: str, entry: dict[str, Any] | None) -> None:
        if not entry:
            return
        flat[prefix] = float(entry["value"])
        for bound in ("ci_low", "ci_high"):
            if entry.get(bound) is not None:
                flat[f"{prefix}.{bound}"] = float(entry[bound])

    for key, row in comparison["models"].items():
        for metric in ("accuracy", "f1_macro"):
            add_interval(f"{key}.{metric}", row[metric])
            difference = row["reference_minus_model"]
            if difference:
                add_interval(
                    f"{key}.reference_minus_model.{metric}", difference[metric]
                )
        if row["latency_ms_per_prediction"] is not None:
            flat[f"{key}.latency_ms"] = float(row["latency_ms_per_prediction"])
        for name, entry in (
            ("training_cost_usd", row["training_cost"]),
            ("cost_per_1000_predictions_usd", row["cost_per_1000_predictions"]),
        ):
            if entry and entry.get("usd") is not None:
                flat[f"{key}.{name}"] = float(entry["usd"])
    return flat
