"""The fine-tuning step the training pipeline's node runs: the Hugging Face Trainer.

``fit`` is the whole training step as one top-level function of plain data (a
``DatasetDict``, the label names and three parameter blocks), so it runs unchanged in
this process or inside each torch.distributed worker (torchrun, Spark's
TorchDistributor): under ``WORLD_SIZE > 1`` the Trainer sets up DDP itself, every rank
returns the same trained model, and only the caller holding rank 0's result should save
it. The node, :func:`.nodes.train_classifier`, hands ``fit`` to the launcher that
``training.distributed`` names (:mod:`llm_finetuning.distributed`). This module imports
torch and transformers, so the node imports it when it runs, not when the pipeline is
built.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import torch
from datasets import Dataset, DatasetDict
from sklearn.metrics import accuracy_score, f1_score
from transformers import (
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    EvalPrediction,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from llm_finetuning.console import show_progress
from llm_finetuning.datasets import TextClassifier
from llm_finetuning.lineage import split_digest
from llm_finetuning.models import (
    ModelParams,
    apply_lora,
    build_classifier,
    load_tokenizer,
    model_for_saving,
    parameter_counts,
)
from llm_finetuning.params import RuntimeParams
from llm_finetuning.pipelines.training import checkpoints
from llm_finetuning.pipelines.training.callbacks import (
    MlflowMetricsCallback,
    PeriodicCheckpointCallback,
    active_run_id,
    log_to_run,
)
from llm_finetuning.pipelines.training.params import TrainingParams
from llm_finetuning.pipelines.training.sampling import ClassifierTrainer
from llm_finetuning.pipelines.training.throughput import (
    BatchStats,
    ThroughputCallback,
    default_peak_flops,
    throughput_report,
    training_flops,
)

logger = logging.getLogger(__name__)

MODEL_COLUMNS = ("input_ids", "attention_mask", "labels")
LENGTH_COLUMN = "length"
# Settings that change where and how a run is recorded, not what it computes: a
# checkpoint written under other values of these is still resumable.
_NOT_FINGERPRINTED = (
    "checkpoints",
    "logging_steps",
    "progress_bar",
    "peak_flops",
    "dataloader_num_workers",
)


class DynamicPaddingCollator(DataCollatorWithPadding):
    """Pads each batch to its longest review and drops the ``length`` column.

    The length-grouped sampler reads ``length``; the model must not receive it.
    """

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        return super().__call__(
            [
                {key: value for key, value in f.items() if key != LENGTH_COLUMN}
                for f in features
            ]
        )


def fit(
    tokenized_reviews: DatasetDict,
    label_names: list[str],
    model_params: ModelParams | dict[str, Any],
    training_params: TrainingParams | dict[str, Any],
    runtime_params: RuntimeParams | dict[str, Any],
    *,
    callbacks: Sequence[TrainerCallback] = (),
) -> tuple[TextClassifier, dict[str, Any]]:
    """Fine-tune the configured model on the tokenized reviews.

    The phases, each its own function: build the model, prepare the checkpoint folder,
    build the Trainer, train, then report and package the result. The parameters may
    be the typed blocks or plain dicts (a test, a worker): both are validated by the
    same models.

    Args:
        tokenized_reviews: ``train`` and (when evaluating) ``validation`` splits with
            ``input_ids``, ``attention_mask``, ``labels`` (and ``length``), unpadded.
        label_names: Class names; index = label id.
        model_params: The ``model`` block (:class:`~llm_finetuning.models.ModelParams`).
        training_params: The ``training`` block (:class:`.params.TrainingParams`).
        runtime_params: The ``runtime`` block
            (:class:`~llm_finetuning.params.RuntimeParams`).
        callbacks: Extra Trainer callbacks (a launcher's progress reporting, a test's
            simulated crash).

    Returns:
        The trained classifier (best validation checkpoint when evaluating; LoRA merged
        if asked) on the CPU, and the training metrics (history, throughput, MFU).
    """
    config = TrainingParams.model_validate(training_params)
    spec = ModelParams.model_validate(model_params)
    runtime = RuntimeParams.model_validate(runtime_params)
    seed = runtime.seed
    if runtime.num_threads:
        torch.set_num_threads(runtime.num_threads)

    splits = training_splits(tokenized_reviews, label_names, config.evaluation.enabled)
    tokenizer, model = build_model(spec, config, label_names, seed)
    precision = resolve_precision(config.precision)
    args = training_arguments(
        config,
        seed=seed,
        precision=precision,
        output_dir=Path(config.checkpoints.dir),
    )
    run_fingerprint = _run_fingerprint(spec, config, label_names, seed, splits)
    resume_from = prepare_checkpoints(args, config, run_fingerprint)
    facts = _run_facts(
        model,
        args,
        config,
        splits=splits,
        precision=precision,
        resume_from=resume_from,
    )
    _log_start(model, facts, resume_from)

    stats = BatchStats()
    timer = ThroughputCallback()
    trainer = build_trainer(
        model,
        tokenizer,
        args,
        config,
        splits=splits,
        stats=stats,
        callbacks=[
            timer,
            MlflowMetricsCallback(
                {f"fit.{key}": value for key, value in facts.items()}
            ),
            *callbacks,
        ],
    )
    # The checkpoints stay until the model is saved: the catalog's save of
    # ``fine_tuned_model`` ends the run (``hooks.CheckpointHooks``), so a kill before
    # or during that save resumes from them instead of training again.
    summary = trainer.train(
        resume_from_checkpoint=str(resume_from) if resume_from else None
    )
    metrics = training_report(
        trainer, config, stats=stats, timer=timer, facts=facts, summary=summary.metrics
    )
    metadata = {
        "label_names": list(label_names),
        "model": spec.to_dict(),
        "training": config.to_dict(),
        "training_arguments": args.to_sanitized_dict(),
        "data": {name: split.num_rows for name, split in splits.items()},
        "fit": facts,
        "best": metrics["best"],
        "run_fingerprint": run_fingerprint,
        "checkpoints": {
            "dir": config.checkpoints.dir,
            "keep_after_success": config.checkpoints.keep_after_success,
        },
    }
    saved_model = model_for_saving(trainer.model, config.lora).to("cpu").eval()
    return TextClassifier(
        model=saved_model, tokenizer=tokenizer, metadata=metadata
    ), metrics


def build_model(
    spec: ModelParams, config: TrainingParams, label_names: list[str], seed: int
) -> tuple[Any, Any]:
    """The tokenizer and the classifier to train (LoRA-wrapped if asked)."""
    if (
        config.lora.enabled
        and not config.lora.merge_on_save
        and spec.source == "config"
    ):
        raise ValueError(
            "training.lora.merge_on_save: false saves only the adapter, which loads "
            "with its base model by name: it needs model.source hub or local"
        )
    tokenizer = load_tokenizer(spec)
    set_seed(seed)  # the new classification head is initialised from the seed
    model = build_classifier(spec, tokenizer, label_names)
    if config.lora.enabled:
        model = apply_lora(model, config.lora)
    return tokenizer, model


def prepare_checkpoints(
    args: TrainingArguments, config: TrainingParams, run_fingerprint: str
) -> Path | None:
    """The checkpoint to resume from (or ``None``), with the folder tidied for it.

    The main process decides and tidies first; the others then see the same folder.
    """
    folder = Path(config.checkpoints.dir)
    with args.main_process_first(desc="checkpoint folder"):
        resume_from = checkpoints.resume_point(
            folder, run_fingerprint, config.checkpoints.resume
        )
        if args.process_index == 0:
            checkpoints.prepare(folder, run_fingerprint, resume_from)
    return resume_from


def build_trainer(
    model: Any,
    tokenizer: Any,
    args: TrainingArguments,
    config: TrainingParams,
    *,
    splits: dict[str, Dataset],
    stats: BatchStats,
    callbacks: Sequence[TrainerCallback],
) -> ClassifierTrainer:
    """The Trainer with dynamic padding, periodic checkpoints and early stopping."""
    trainer_callbacks = list(callbacks)
    evaluation = config.evaluation
    if evaluation.enabled:
        trainer_callbacks.append(
            PeriodicCheckpointCallback(config.checkpoints.every_n_steps)
        )
        if evaluation.early_stopping_patience is not None:
            trainer_callbacks.append(
                EarlyStoppingCallback(
                    evaluation.early_stopping_patience,
                    evaluation.early_stopping_threshold,
                )
            )
    return ClassifierTrainer(
        model=model,
        args=args,
        train_dataset=splits["train"],
        eval_dataset=splits.get("validation"),
        processing_class=tokenizer,
        # Tensor cores work on multiples of 8; on CPU extra padding is only waste.
        data_collator=DynamicPaddingCollator(
            tokenizer, pad_to_multiple_of=8 if args.device.type == "cuda" else None
        ),
        compute_metrics=classification_metrics if evaluation.enabled else None,
        callbacks=trainer_callbacks,
        batch_stats=stats,
        layerwise_lr_decay=config.layerwise_lr_decay,
    )


def training_report(
    trainer: ClassifierTrainer,
    config: TrainingParams,
    *,
    stats: BatchStats,
    timer: ThroughputCallback,
    facts: dict[str, Any],
    summary: dict[str, Any],
) -> dict[str, Any]:
    """``training_metrics``: the run's facts, history, best step and throughput.

    The throughput figures are also logged to the MLflow run (main process only).
    """
    config_of_model = trainer.model.config
    counts = parameter_counts(trainer.model)
    peak = config.peak_flops or default_peak_flops(
        trainer.args.device, facts["precision"]
    )
    flops = training_flops(
        stats,
        counts,
        num_layers=config_of_model.num_hidden_layers,
        hidden_size=config_of_model.hidden_size,
    )
    throughput = throughput_report(
        stats, timer.train_seconds, flops, peak, cpu_seconds=timer.train_cpu_seconds
    )
    step = trainer.state.global_step
    _log_throughput(throughput, step)
    if trainer.is_world_process_zero():
        log_to_run(
            active_run_id(),
            metrics={
                f"throughput.{k}": v for k, v in throughput.items() if v is not None
            },
            step=step,
        )
    return {
        **facts,
        "parameters": counts,
        "global_step": step,
        "epochs_completed": trainer.state.epoch,
        "best": _best(trainer),
        "history": _history(trainer.state.log_history),
        "summary": summary,
        "throughput": throughput,
    }


def _run_facts(
    model: Any,
    args: TrainingArguments,
    config: TrainingParams,
    *,
    splits: dict[str, Dataset],
    precision: str,
    resume_from: Path | None,
) -> dict[str, Any]:
    """What this run is: device, precision, processes, batch, data and model sizes."""
    counts = parameter_counts(model)
    return {
        "device": str(args.device),
        "precision": precision,
        "world_size": args.world_size,
        "num_threads": torch.get_num_threads(),
        "effective_batch_size": config.batch_size
        * config.gradient_accumulation_steps
        * args.world_size,
        "train_samples": splits["train"].num_rows,
        "validation_samples": splits["validation"].num_rows
        if "validation" in splits
        else 0,
        "parameters": counts["total"],
        "trainable_parameters": counts["trainable"],
        "resumed_from_step": _step_of(resume_from),
    }


def _log_start(model: Any, facts: dict[str, Any], resume_from: Path | None) -> None:
    logger.info(
        "Training %s on %s (%d process(es), %d CPU threads), precision %s; "
        "%s of %s parameters trainable (%.2f%%)%s",
        type(model).__name__,
        facts["device"],
        facts["world_size"],
        facts["num_threads"],
        facts["precision"],
        f"{facts['trainable_parameters']:,}",
        f"{facts['parameters']:,}",
        100 * facts["trainable_parameters"] / facts["parameters"],
        f"; resuming from {resume_from}" if resume_from else "",
    )


def training_splits(
    tokenized_reviews: DatasetDict, label_names: list[str], needs_validation: bool
) -> dict[str, Dataset]:
    """The splits the Trainer needs, checked and reduced to the model's columns.

    Raises:
        ValueError: Naming the split, column and rows that break the contract (missing
            split or column, label outside ``0..K-1``, empty review).
    """
    wanted = ["train", "validation"] if needs_validation else ["train"]
    missing = [name for name in wanted if name not in tokenized_reviews]
    if missing:
        raise ValueError(
            f"tokenized_reviews lacks the split(s) {missing}; it has "
            f"{sorted(tokenized_reviews)}"
        )
    return {
        name: _checked_split(tokenized_reviews[name], name, label_names)
        for name in wanted
    }


def _checked_split(split: Dataset, name: str, label_names: list[str]) -> Dataset:
    absent = [column for column in MODEL_COLUMNS if column not in split.column_names]
    if absent:
        raise ValueError(
            f"tokenized_reviews['{name}'] lacks the column(s) {absent}; it has "
            f"{split.column_names}"
        )
    if split.num_rows == 0:
        raise ValueError(f"tokenized_reviews['{name}'] is empty")
    table = split.with_format("arrow")
    labels = np.asarray(table["labels"])
    bad_labels = np.flatnonzero((labels < 0) | (labels >= len(label_names)))
    if bad_labels.size:
        raise ValueError(
            f"tokenized_reviews['{name}'] column 'labels' has values outside "
            f"0..{len(label_names) - 1} ({label_names}) in {bad_labels.size} row(s), "
            f"first rows {bad_labels[:10].tolist()}"
        )
    lengths = pc.list_value_length(table["input_ids"]).to_numpy(zero_copy_only=False)
    empty = np.flatnonzero(lengths == 0)
    if empty.size:
        raise ValueError(
            f"tokenized_reviews['{name}'] has {empty.size} empty review(s) (no tokens), "
            f"first rows {empty[:10].tolist()}"
        )
    split = split.select_columns(list(MODEL_COLUMNS))
    return split.add_column(LENGTH_COLUMN, lengths.astype(np.int64).tolist())


def resolve_precision(requested: str) -> str:
    """``auto``: bf16 on GPUs that support it, fp16 on other GPUs, fp32 on CPU."""
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def training_arguments(
    config: TrainingParams, *, seed: int, precision: str, output_dir: Path
) -> TrainingArguments:
    """The Trainer's arguments for ``config``.

    With evaluation on, the Trainer keeps the best checkpoint by the configured
    metric and restores it at the end (``save_strategy="best"``); the periodic
    checkpoints for resuming come from :class:`PeriodicCheckpointCallback`, because the
    Trainer demands matching save and evaluation schedules otherwise.
    """
    evaluation = config.evaluation
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=evaluation.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup,
        max_grad_norm=config.max_grad_norm,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        activation_checkpointing=config.gradient_checkpointing,
        train_sampling_strategy="group_by_length"
        if config.group_by_length
        else "random",
        length_column_name=LENGTH_COLUMN,
        eval_strategy=evaluation.strategy,
        eval_steps=evaluation.steps,
        save_strategy="best" if evaluation.enabled else "steps",
        save_steps=config.checkpoints.every_n_steps,
        # The best checkpoint is kept besides the last ``keep_last``.
        save_total_limit=config.checkpoints.keep_last
        + (1 if evaluation.enabled else 0),
        load_best_model_at_end=evaluation.enabled,
        metric_for_best_model=evaluation.metric if evaluation.enabled else None,
        restore_callback_states_from_checkpoint=True,
        logging_strategy="steps",
        logging_steps=config.logging_steps,
        logging_first_step=True,
        disable_tqdm=not show_progress(config.progress_bar),
        report_to="none",
        seed=seed,
        # The length column feeds the sampler; the collator drops it before the model.
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_num_workers=config.dataloader_num_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        # The classification loss is a per-batch mean that ignores num_items_in_batch;
        # with token averaging on (the default) the Trainer multiplies it by the world
        # size under DDP, so loss, gradient norm and clipping are N times too large.
        average_tokens_across_devices=False,
    )


def classification_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """Accuracy and macro F1 of the validation predictions (scikit-learn)."""
    logits = prediction.predictions
    if isinstance(logits, tuple):
        logits = logits[0]
    predicted = np.argmax(logits, axis=-1)
    labels = prediction.label_ids
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "f1": float(f1_score(labels, predicted, average="macro")),
    }


def _history(log_history: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Split the Trainer's log into training-loss and evaluation entries."""
    train = [
        {
            k: entry[k]
            for k in ("step", "epoch", "loss", "learning_rate", "grad_norm")
            if k in entry
        }
        for entry in log_history
        if "loss" in entry
    ]
    evaluations = [
        {
            k: v
            for k, v in entry.items()
            if k.startswith("eval_") or k in ("step", "epoch")
        }
        for entry in log_history
        if "eval_loss" in entry
    ]
    return {"train": train, "eval": evaluations}


def _best(trainer: ClassifierTrainer) -> dict[str, Any]:
    state = trainer.state
    metric = trainer.args.metric_for_best_model
    if metric and not metric.startswith("eval_"):
        metric = f"eval_{metric}"
    return {
        "metric": metric,
        "value": state.best_metric,
        "step": state.best_global_step,
    }


def _log_throughput(throughput: dict[str, Any], steps: int) -> None:
    mfu = throughput["mfu"]
    logger.info(
        "Trained %d steps in %.1f s: %.2f samples/s, %.0f real tokens/s "
        "(%.0f%% padding), MFU %s",
        steps,
        throughput["train_seconds"],
        throughput["samples_per_second"],
        throughput["real_tokens_per_second"],
        100 * throughput["padding_share"],
        f"{mfu:.1%}" if mfu is not None else "n/a (set training.peak_flops)",
    )


def _step_of(checkpoint: Path | None) -> int | None:
    return int(checkpoint.name.rsplit("-", 1)[1]) if checkpoint else None


def _run_fingerprint(
    spec: ModelParams,
    config: TrainingParams,
    label_names: list[str],
    seed: int,
    splits: dict[str, Dataset],
) -> str:
    """What makes two runs the same run: model, parameters, labels, seed and data."""
    training = {
        k: v for k, v in config.to_dict().items() if k not in _NOT_FINGERPRINTED
    }
    if training.get("layerwise_lr_decay") is None:
        # Off: fingerprints stay those of runs from before the setting existed.
        training.pop("layerwise_lr_decay", None)
    data = {
        name: {
            "rows": split.num_rows,
            "sha256": split_digest(split, ("labels", LENGTH_COLUMN)),
        }
        for name, split in splits.items()
    }
    return checkpoints.fingerprint(
        {
            "model": spec.to_dict(),
            "training": training,
            "labels": list(label_names),
            "seed": seed,
            "data": data,
        }
    )
