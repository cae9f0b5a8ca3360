"""Training throughput the nanoGPT way: samples/s, real tokens/s and MFU.

``MeasuredTrainer`` counts the samples and non-padding tokens of every training batch;
``ThroughputCallback`` adds up the wall time of optimizer steps (data loading, forward,
backward, optimizer) and leaves out evaluation, checkpointing and logging, which happen
between steps. It also adds up the CPU time this process spent in those steps: on a
shared machine, other processes slow the wall clock but not that, so per-CPU-second
rates compare recipes fairly there. Counts are per process: under DDP each rank
reports its own device.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from transformers import Trainer, TrainerCallback

# Dense bf16/fp16 tensor-core peak FLOP/s per GPU (vendor data sheets), for the MFU
# estimate when ``training.peak_flops`` is not given. Matched against the device name.
GPU_PEAK_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10": 125e12,
    "L4": 121e12,
    "V100": 125e12,
    "T4": 65e12,
}


@dataclass
class BatchStats:
    """Running totals over the training batches of one process."""

    samples: int = 0
    real_tokens: int = 0
    padded_tokens: int = 0
    sum_squared_lengths: int = 0

    def add(self, attention_mask: torch.Tensor) -> None:
        """Count one padded batch from its attention mask (1 = real token)."""
        lengths = attention_mask.sum(dim=1)
        self.samples += int(attention_mask.shape[0])
        self.real_tokens += int(lengths.sum())
        self.padded_tokens += int(attention_mask.numel())
        self.sum_squared_lengths += int((lengths * lengths).sum())


class MeasuredTrainer(Trainer):
    """``Trainer`` that counts what each training batch holds into ``batch_stats``."""

    def __init__(self, *args: Any, batch_stats: BatchStats, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_stats = batch_stats

    def training_step(self, model, inputs, num_items_in_batch=None):
        self.batch_stats.add(inputs["attention_mask"])
        return super().training_step(model, inputs, num_items_in_batch)


class ThroughputCallback(TrainerCallback):
    """Sums the wall time of optimizer steps, leaving out evaluation and saving.

    Evaluation, checkpointing and logging run after ``on_step_end``; each ends with an
    event (``on_evaluate``, ``on_save``, ``on_log``) that restarts the clock, so the
    next step is timed from there.
    """

    def __init__(self) -> None:
        self.train_seconds = 0.0
        self.train_cpu_seconds = 0.0
        self.steps = 0
        self._clock = time.perf_counter()
        self._cpu_clock = time.process_time()

    def _restart(self, *_: Any, **__: Any) -> None:
        self._clock = time.perf_counter()
        self._cpu_clock = time.process_time()

    on_train_begin = _restart
    on_evaluate = _restart
    on_save = _restart
    on_log = _restart

    def on_step_end(self, args, state, control, **kwargs):
        now, cpu_now = time.perf_counter(), time.process_time()
        self.train_seconds += now - self._clock
        self.train_cpu_seconds += cpu_now - self._cpu_clock
        self.steps += 1
        self._clock, self._cpu_clock = now, cpu_now


def training_flops(
    stats: BatchStats,
    parameters: dict[str, int],
    num_layers: int,
    hidden_size: int,
) -> float:
    """Useful FLOPs of the counted batches: padding does no useful work.

    Per real token, the weights cost 2N (forward) + 2N (gradients of the activations)
    + 2N_trainable (gradients of the weights): 6N in full fine-tuning, about 4N with
    LoRA. N counts non-embedding matrices only, and so does N_trainable: an embedding
    is a lookup and its gradient a scatter, not a matmul (counting them, as this once
    did, gave an MFU above 100%). Attention adds 12 * layers * width * n per token of
    a review of n tokens (nanoGPT's estimate, PaLM appendix B).
    """
    weights = (
        4 * parameters["non_embedding"] + 2 * parameters["trainable_non_embedding"]
    )
    attention = 12 * num_layers * hidden_size * stats.sum_squared_lengths
    return float(weights * stats.real_tokens + attention)


def checked_mfu(mfu: float | None) -> float | None:
    """``mfu``, or a ValueError when it is impossible (above 100% of the peak).

    A figure above the peak means the FLOP count or the peak is wrong, never that the
    code is fast: benchmarks stop on it rather than print it.
    """
    if mfu is not None and mfu > 1:
        raise ValueError(
            f"MFU {mfu:.1%} is above 100%: the useful-FLOP count "
            "(throughput.training_flops) or the peak FLOP/s is wrong"
        )
    return mfu


def default_peak_flops(device: torch.device, precision: str) -> float | None:
    """The peak FLOP/s of a known GPU in half precision; ``None`` where unknown."""
    if device.type != "cuda" or precision not in ("bf16", "fp16"):
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in GPU_PEAK_FLOPS.items() if key in name), None)


def throughput_report(
    stats: BatchStats,
    seconds: float,
    flops: float,
    peak_flops: float | None,
    cpu_seconds: float | None = None,
) -> dict[str, float | None]:
    """samples/s, real and padded tokens/s, padding share and MFU of one device.

    ``cpu_seconds`` (the process's CPU time in the same steps) adds samples per
    CPU-second: with one CPU thread, the samples/s the steps would reach alone.
    """
    seconds = max(seconds, 1e-9)
    flops_per_second = flops / seconds
    return {
        "train_seconds": seconds,
        "train_cpu_seconds": cpu_seconds,
        "samples_per_cpu_second": stats.samples / cpu_seconds if cpu_seconds else None,
        "samples": stats.samples,
        "real_tokens": stats.real_tokens,
        "padded_tokens": stats.padded_tokens,
        "samples_per_second": stats.samples / seconds,
        "real_tokens_per_second": stats.real_tokens / seconds,
        "padded_tokens_per_second": stats.padded_tokens / seconds,
        "padding_share": 1 - stats.real_tokens / max(stats.padded_tokens, 1),
        "model_flops_per_second": flops_per_second,
        "peak_flops": peak_flops,
        "mfu": flops_per_second / peak_flops if peak_flops else None,
    }
