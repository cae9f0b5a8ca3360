"""Nodes of the training pipeline: fine-tune a classifier, plot its training curve.

The fine-tuning itself (``fit``, the Trainer and its callbacks) lives in
:mod:`.trainer`, which imports torch and transformers: the node imports it when it
runs, so building the pipelines stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from llm_finetuning.datasets.model_folder import TextClassifier
from llm_finetuning.distributed import launch
from llm_finetuning.models import ModelParams
from llm_finetuning.params import RuntimeParams
from llm_finetuning.pipelines.training.params import TrainingParams

if TYPE_CHECKING:
    from datasets import DatasetDict
    from matplotlib.figure import Figure
else:
    # Kedro resolves node functions' type hints (typing.get_type_hints) to validate
    # their ``params:`` inputs: these names must resolve without the imports.
    DatasetDict = Figure = Any


def train_classifier(
    tokenized_reviews: DatasetDict,
    label_names: list[str],
    model: ModelParams,
    training: TrainingParams,
    runtime: RuntimeParams,
) -> tuple[TextClassifier, dict[str, Any]]:
    """Run :func:`.trainer.fit` in this process or on the processes ``training.distributed`` sets.

    Kedro has checked the parameters before any node ran, so a typo fails before
    data_processing, let alone a worker, starts. Returns rank 0's model and metrics.
    """
    from llm_finetuning.pipelines.training.trainer import fit

    return launch(
        fit,
        tokenized_reviews,
        label_names,
        model,
        training,
        runtime,
        config=training.distributed,
    )


def plot_training_curve(training_metrics: dict[str, Any]) -> Figure:
    """Training and validation loss, and validation metrics, against the step."""
    from matplotlib.figure import Figure

    history = training_metrics["history"]
    figure = Figure(figsize=(10, 4), layout="constrained")
    loss_axis, metric_axis = figure.subplots(1, 2)
    train = history["train"]
    evaluations = history["eval"]
    loss_axis.plot(
        [e["step"] for e in train], [e["loss"] for e in train], label="training"
    )
    if evaluations:
        loss_axis.plot(
            [e["step"] for e in evaluations],
            [e["eval_loss"] for e in evaluations],
            marker="o",
            label="validation",
        )
    loss_axis.set(title="Loss", xlabel="optimizer step", ylabel="cross-entropy")
    loss_axis.legend()
    for name in ("eval_accuracy", "eval_f1"):
        points = [(e["step"], e[name]) for e in evaluations if name in e]
        if points:
            steps, values = zip(*points, strict=True)
            metric_axis.plot(
                steps, values, marker="o", label=name.removeprefix("eval_")
            )
    metric_axis.set(title="Validation", xlabel="optimizer step", ylim=(0, 1))
    if evaluations:
        metric_axis.legend()
    throughput = training_metrics["throughput"]
    figure.suptitle(
        f"{throughput['samples_per_second']:.1f} samples/s, "
        f"{throughput['real_tokens_per_second']:,.0f} real tokens/s"
        + (f", MFU {throughput['mfu']:.0%}" if throughput.get("mfu") else "")
    )
    return figure


def __getattr__(name: str) -> Any:
    """The fine-tuning helpers (``fit``, ``DynamicPaddingCollator``, ...) as before.

    They moved to :mod:`.trainer`; importing them from here still works, and loads
    torch and transformers only then.
    """
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    trainer = importlib.import_module("llm_finetuning.pipelines.training.trainer")
    try:
        return getattr(trainer, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
