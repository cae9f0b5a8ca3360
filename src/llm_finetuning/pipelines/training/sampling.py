"""Length-grouped batches whose order depends only on the seed and the epoch.

The Trainer's ``LengthGroupedSampler`` draws each epoch's order from torch's global
random state. A run resumed in the middle of epoch 3 rebuilds epoch 3's order from the
state the new process has at that moment (not the one the interrupted run had at the
start of epoch 3), trains on other batches, and consumes dropout randomness for other
shapes from then on: it no longer reproduces the uninterrupted run. Seeding each
epoch's order from ``(seed, epoch)`` makes it the same in both runs and leaves the
global state (restored from the checkpoint) to dropout alone.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler

from llm_finetuning.pipelines.training.layerwise import layerwise_parameter_groups
from llm_finetuning.pipelines.training.throughput import MeasuredTrainer


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """``LengthGroupedSampler`` drawing epoch ``e``'s order from ``seed + e``.

    The Trainer (through accelerate's data loader) calls :meth:`set_epoch` before each
    epoch, including the one a resumed run starts in.
    """

    def __init__(self, *args: Any, seed: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Fix the order of ``epoch``."""
        self.epoch = epoch
        self.generator = torch.Generator().manual_seed(self.seed + epoch)


class ClassifierTrainer(MeasuredTrainer):
    """The project's Trainer: measured batches, resumable length-grouped order, and
    layer-wise learning-rate decay when ``layerwise_lr_decay`` is set."""

    def __init__(
        self, *args: Any, layerwise_lr_decay: float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.layerwise_lr_decay = layerwise_lr_decay

    def create_optimizer(self, model=None):
        if self.layerwise_lr_decay is None or self.optimizer is not None:
            return super().create_optimizer(model)
        model = self.model if model is None else model
        groups = layerwise_parameter_groups(
            model.named_parameters(),
            num_layers=model.config.num_hidden_layers,
            learning_rate=self.args.learning_rate,
            decay=self.layerwise_lr_decay,
            weight_decay=self.args.weight_decay,
            decay_names=set(self.get_decay_parameter_names(model)),
        )
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(
            self.args, model
        )
        # Each group's own ``lr`` wins over the default; the scheduler scales each.
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if type(sampler) is not LengthGroupedSampler:
            # The random sampler is already seeded per epoch (accelerate's
            # SeedableRandomSampler, the Trainer's default).
            return sampler
        seed = (
            self.args.data_seed if self.args.data_seed is not None else self.args.seed
        )
        return EpochSeededLengthGroupedSampler(
            sampler.batch_size, lengths=sampler.lengths, seed=seed
        )
