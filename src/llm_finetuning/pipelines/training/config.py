"""Typed form of the ``training`` parameters block.

Every key of ``conf/<env>/parameters_training.yml`` maps to a field here; an unknown or
misspelt key is an error naming it, not a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from llm_finetuning.distributed import DistributedConfig
from llm_finetuning.models import LoraSpec

Precision = Literal["auto", "bf16", "fp16", "fp32"]
EvaluationStrategy = Literal["epoch", "steps", "no"]
_PRECISIONS = ("auto", "bf16", "fp16", "fp32")
_EVALUATION_STRATEGIES = ("epoch", "steps", "no")


@dataclass(frozen=True)
class EvaluationConfig:
    """When to evaluate on the validation split and how to pick the best model.

    Attributes:
        strategy: ``epoch``, ``steps`` (every ``steps`` optimizer steps) or ``no``.
        steps: Evaluation interval for ``strategy: steps``.
        batch_size: Evaluation batch size per device (no gradients: can be large).
        metric: Validation metric that selects the best model and drives early
            stopping: ``f1`` (macro), ``accuracy`` or ``loss``. The best model is the
            one saved.
        early_stopping_patience: Evaluations without improvement before stopping;
            ``null`` never stops early.
        early_stopping_threshold: Smallest change that counts as an improvement.
    """

    strategy: EvaluationStrategy = "epoch"
    steps: int | None = None
    batch_size: int = 64
    metric: str = "f1"
    early_stopping_patience: int | None = 2
    early_stopping_threshold: float = 0.0

    def __post_init__(self) -> None:
        if self.strategy not in _EVALUATION_STRATEGIES:
            raise ValueError(
                f"training.evaluation.strategy must be one of {_EVALUATION_STRATEGIES}, "
                f"not {self.strategy!r}"
            )
        if self.strategy == "steps" and (self.steps is None or self.steps < 1):
            raise ValueError("training.evaluation.strategy 'steps' needs steps >= 1")
        if (
            self.early_stopping_patience is not None
            and self.early_stopping_patience < 1
        ):
            raise ValueError("training.evaluation.early_stopping_patience must be >= 1")

    @property
    def enabled(self) -> bool:
        """Whether the validation split is used at all."""
        return self.strategy != "no"


@dataclass(frozen=True)
class CheckpointConfig:
    """Where and how often to checkpoint, and whether to resume.

    Attributes:
        dir: Folder for ``checkpoint-<step>`` subfolders (weights, optimizer,
            scheduler, RNG and trainer state). Relative paths are relative to the
            working directory, i.e. the project root under ``kedro run``.
        every_n_steps: Optimizer steps between checkpoints.
        keep_last: Checkpoints kept besides the best one (older ones are deleted).
        resume: ``auto`` continues from the last complete checkpoint of the same run
            (same data, model and parameters) if there is one; ``never`` always starts
            afresh; any other value is the path of a ``checkpoint-<step>`` folder.
        keep_after_success: Keep the checkpoints once training has finished (they are
            deleted by default: the model itself is saved through the catalog).
    """

    dir: str = "data/06_models/checkpoints"
    every_n_steps: int = 500
    keep_last: int = 2
    resume: str = "auto"
    keep_after_success: bool = False

    def __post_init__(self) -> None:
        if self.every_n_steps < 1 or self.keep_last < 1:
            raise ValueError(
                "training.checkpoints.every_n_steps and keep_last must be >= 1"
            )


@dataclass(frozen=True)
class TrainingConfig:
    """The ``training`` parameters block.

    Attributes:
        epochs: Passes over the training split (fractions allowed).
        max_steps: Optimizer steps to stop after; overrides ``epochs`` when set.
        batch_size: Training batch size per device (per process under DDP).
        gradient_accumulation_steps: Batches per optimizer step; the effective batch
            is ``batch_size * gradient_accumulation_steps * world size``.
        learning_rate: Peak learning rate (AdamW).
        weight_decay: AdamW weight decay (not applied to biases and norms).
        lr_scheduler: ``linear``, ``cosine`` or any transformers scheduler name.
        warmup: Warm-up length: a fraction of all steps if below 1, else steps.
        max_grad_norm: Gradient clipping norm; 0 disables clipping.
        precision: ``auto`` picks bf16 on GPUs that support it, fp16 on other GPUs and
            fp32 on CPU; or force one.
        gradient_checkpointing: Recompute activations in the backward pass (less
            memory, about 30% more compute).
        group_by_length: Batch reviews of similar length together so dynamic padding
            adds little; ``false`` samples uniformly (the reference lab).
        logging_steps: Optimizer steps between loss log entries.
        progress_bar: Show the Trainer's progress bar.
        peak_flops: Peak FLOP/s of one device for the MFU estimate; ``null`` looks
            the GPU up in a small table and reports no MFU on CPU.
        dataloader_num_workers: Worker processes for batching (0: in the main one).
        evaluation: See :class:`EvaluationConfig`.
        checkpoints: See :class:`CheckpointConfig`.
        lora: See :class:`llm_finetuning.models.LoraSpec`.
        distributed: Who starts the training processes (none, torchrun, Spark's
            TorchDistributor); see :class:`llm_finetuning.distributed.DistributedConfig`.
    """

    epochs: float = 3.0
    max_steps: int | None = None
    batch_size: int = 16
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    lr_scheduler: str = "linear"
    warmup: float = 0.06
    max_grad_norm: float = 1.0
    precision: Precision = "auto"
    gradient_checkpointing: bool = False
    group_by_length: bool = True
    logging_steps: int = 10
    progress_bar: bool = True
    peak_flops: float | None = None
    dataloader_num_workers: int = 0
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    checkpoints: CheckpointConfig = field(default_factory=CheckpointConfig)
    lora: LoraSpec = field(default_factory=LoraSpec)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    def __post_init__(self) -> None:
        if self.precision not in _PRECISIONS:
            raise ValueError(
                f"training.precision must be one of {_PRECISIONS}, not {self.precision!r}"
            )
        positive = {
            "batch_size": self.batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "logging_steps": self.logging_steps,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"training.{name} must be >= 1, not {value}")
        if self.max_steps is None and self.epochs <= 0:
            raise ValueError("training.epochs must be positive (or set max_steps)")
        if self.learning_rate <= 0 or self.warmup < 0:
            raise ValueError("training.learning_rate must be > 0 and warmup >= 0")

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> TrainingConfig:
        """Build from the ``training`` parameters block, rejecting unknown keys."""
        params = dict(params or {})
        _reject_unknown(cls, params, "training")
        nested = {
            "evaluation": EvaluationConfig,
            "checkpoints": CheckpointConfig,
        }
        for key, nested_cls in nested.items():
            if key in params:
                block = dict(params[key] or {})
                _reject_unknown(nested_cls, block, f"training.{key}")
                params[key] = nested_cls(**block)
        if "lora" in params:
            params["lora"] = LoraSpec.from_params(params["lora"])
        if "distributed" in params:
            params["distributed"] = DistributedConfig.from_params(params["distributed"])
        return cls(**params)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON-ready), for metadata and fingerprints."""
        return dataclasses.asdict(self)


def _reject_unknown(cls: type, params: dict[str, Any], where: str) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(params) - known
    if unknown:
        raise ValueError(
            f"Unknown key(s) {sorted(unknown)} in the '{where}' parameters; "
            f"expected some of {sorted(known)}"
        )
