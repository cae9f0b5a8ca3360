"""The run summary: what a ``kedro run`` made, where, how good, and what to run next.

Logged once at the end of every run, and on failure, as short plain lines that read
the same in a terminal and in a piped log (CI, a Databricks job).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# What a user usually runs after each pipeline.
NEXT_STEP = {
    "data_processing": "kedro run --pipelines training",
    "training": "kedro run --pipelines evaluation",
    "evaluation": "kedro run --pipelines deployment",
}
HEADLINE_METRICS = ("accuracy", "f1_macro")
STALE_HEADING = (
    "Stale (from an earlier model or data; rerun the pipeline that writes them, "
    "or delete them):"
)


def dataset_location(dataset: Any) -> str | None:
    """The file or folder a catalog dataset writes, if it says."""
    try:
        described = dataset._describe()
    except Exception:
        return None
    for key in ("filepath", "path", "table_name", "table"):
        if described.get(key):
            return _relative_to_cwd(str(described[key]))
    return None


def _relative_to_cwd(location: str) -> str:
    """A path under the working directory (the project) is shown relative to it."""
    try:
        return str(Path(location).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return location


def metric_line(evaluation_metrics: Mapping[str, Any]) -> str | None:
    """``accuracy 0.861 [0.845, 0.876], f1_macro ...`` from ``evaluation_metrics``."""
    from llm_finetuning.metrics import format_interval

    metrics = evaluation_metrics.get("metrics", {})
    parts = [
        f"{name} {format_interval(metrics[name])}"
        for name in HEADLINE_METRICS
        if isinstance(metrics.get(name), Mapping)
    ]
    if not parts:
        return None
    n = evaluation_metrics.get("n_examples")
    return ", ".join(parts) + (f" on {n} test rows (95% intervals)" if n else "")


def lineage_line(lineage: Any) -> str | None:
    """``Lineage: data <fp>, model <fp> trained in MLflow run <id>`` (what is known)."""
    parts = []
    if lineage.data_fingerprint:
        parts.append(f"data {lineage.data_fingerprint}")
    if lineage.model_fingerprint:
        trained = (
            f" trained in MLflow run {lineage.training_run_id}"
            if lineage.training_run_id
            else ""
        )
        parts.append(f"model {lineage.model_fingerprint}{trained}")
    return "Lineage: " + ", ".join(parts) if parts else None


def summary_lines(
    *,
    pipelines: Sequence[str],
    env: str | None,
    saved: Mapping[str, str | None],
    evaluation_metrics: Mapping[str, Any] | None,
    baselines_table: str | None,
    mlflow_run: Mapping[str, str] | None,
    error: BaseException | None = None,
    lineage: Any = None,
    stale: Sequence[str] = (),
) -> list[str]:
    """The summary as plain lines (no wrapping, no colour).

    ``lineage`` is the run's :class:`~llm_finetuning.lineage.Lineage`; ``stale`` the
    outputs on disk from an earlier model or data, listed so that nobody reads them
    as this run's.
    """
    names = ", ".join(pipelines) or "__default__"
    head = f"Run summary: pipelines {names}, env {env or 'local'}"
    lines = [head + (f": FAILED ({type(error).__name__}: {error})" if error else "")]
    if any(saved.values()):
        lines.append("Saved:")
        # In-memory intermediates are left out: only what a user can open.
        lines += [f"  {name}: {where}" for name, where in saved.items() if where]
    else:
        lines.append("Saved: nothing")
    if evaluation_metrics and (line := metric_line(evaluation_metrics)):
        lines.append(f"Fine-tuned model: {line}")
    if baselines_table:
        rows = [r for r in baselines_table.splitlines() if r.startswith("|")]
        lines.append("Against the baselines (same test rows):")
        lines += [f"  {row}" for row in rows]
    if mlflow_run:
        lines.append(
            f"MLflow: experiment {mlflow_run['experiment']}, run {mlflow_run['run_id']}"
            f"; open it with: mlflow ui --backend-store-uri {mlflow_run['tracking_uri']}"
        )
    if lineage is not None and (line := lineage_line(lineage)):
        lines.append(line)
    if stale:
        lines.append(STALE_HEADING)
        lines += [f"  {path}" for path in stale]
    if error is not None:
        lines.append(
            "Next: fix the cause and run the same command again; it continues from "
            "what was saved (docs/reliability.md)"
        )
    elif next_steps := [NEXT_STEP[p] for p in pipelines if p in NEXT_STEP]:
        lines.append(f"Next: {next_steps[-1]}")
    return lines
