"""The ``training`` parameters block (conf/<env>/parameters_training.yml), typed.

Kedro checks it against :class:`TrainingParams` before any node runs (the training node
takes the model); an unknown or misspelt key is an error naming its full path and the
allowed keys, not a silently ignored setting.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from llm_finetuning.distributed import DistributedParams
from llm_finetuning.models import LoraParams
from llm_finetuning.params import Params

Precision = Literal["auto", "bf16", "fp16", "fp32"]
EvaluationStrategy = Literal["epoch", "steps", "no"]
SelectionMetric = Literal["f1", "accuracy", "loss"]


class EvaluationParams(Params):
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

    key: ClassVar[str] = "training.evaluation"

    strategy: EvaluationStrategy = "epoch"
    steps: int | None = Field(None, ge=1)
    batch_size: int = Field(64, ge=1)
    metric: SelectionMetric = "f1"
    early_stopping_patience: int | None = Field(2, ge=1)
    early_stopping_threshold: float = 0.0

    @model_validator(mode="after")
    def _steps_for_steps(self) -> EvaluationParams:
        if self.strategy == "steps" and self.steps is None:
            raise ValueError("strategy 'steps' needs steps >= 1")
        return self

    @property
    def enabled(self) -> bool:
        """Whether the validation split is used at all."""
        return self.strategy != "no"


class CheckpointParams(Params):
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

    key: ClassVar[str] = "training.checkpoints"

    dir: str = "data/06_models/checkpoints"
    every_n_steps: int = Field(500, ge=1)
    keep_last: int = Field(2, ge=1)
    resume: str = "auto"
    keep_after_success: bool = False


class TrainingParams(Params):
    """The ``training`` parameters block.

    Attributes:
        epochs: Passes over the training split (fractions allowed).
        max_steps: Optimizer steps to stop after; overrides ``epochs`` when set.
        batch_size: Training batch size per device (per process under DDP).
        gradient_accumulation_steps: Batches per optimizer step; the effective batch
            is ``batch_size * gradient_accumulation_steps * world size``.
        learning_rate: Peak learning rate (AdamW).
        layerwise_lr_decay: Layer-wise learning-rate decay: the head takes
            ``learning_rate``, the top layer ``layerwise_lr_decay`` times it, each layer
            below that factor times the one above, embeddings last (:mod:`.layerwise`);
            ``null``: one rate for all.
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
        progress_bar: Show the Trainer's progress bar: ``auto`` on a terminal only
            (a piped log gets one line per logging step instead).
        peak_flops: Peak FLOP/s of one device for the MFU estimate; ``null`` looks
            the GPU up in a small table and reports no MFU on CPU.
        dataloader_num_workers: Worker processes for batching (0: in the main one).
        evaluation: See :class:`EvaluationParams`.
        checkpoints: See :class:`CheckpointParams`.
        lora: See :class:`llm_finetuning.models.LoraParams`.
        distributed: Who starts the training processes (none, torchrun, Spark's
            TorchDistributor); see :class:`llm_finetuning.distributed.DistributedParams`.
    """

    key: ClassVar[str] = "training"

    epochs: float = 3.0
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(16, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    learning_rate: float = Field(5e-5, gt=0)
    layerwise_lr_decay: float | None = Field(None, gt=0, le=1)
    weight_decay: float = Field(0.01, ge=0)
    lr_scheduler: str = "linear"
    warmup: float = Field(0.06, ge=0)
    max_grad_norm: float = Field(1.0, ge=0)
    precision: Precision = "auto"
    gradient_checkpointing: bool = False
    group_by_length: bool = True
    logging_steps: int = Field(10, ge=1)
    progress_bar: bool | Literal["auto"] = "auto"
    peak_flops: float | None = Field(None, gt=0)
    dataloader_num_workers: int = Field(0, ge=0)
    evaluation: EvaluationParams = EvaluationParams()
    checkpoints: CheckpointParams = CheckpointParams()
    lora: LoraParams = LoraParams()
    distributed: DistributedParams = DistributedParams()

    @model_validator(mode="after")
    def _some_training(self) -> TrainingParams:
        if self.max_steps is None and self.epochs <= 0:
            raise ValueError("epochs must be positive (or set max_steps)")
        return self
