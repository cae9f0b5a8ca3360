"""The whole data_processing chain on the real IMDB (25,000 train / 25,000 test)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro_datasets.partitions import PartitionedDataset

from llm_finetuning.pipelines.data_processing.nodes import (
    load_raw_splits,
    sample_splits,
    tokenize_splits,
    validate_and_clean,
)

# conf/base/parameters_data_processing.yml, for the Hub's stanfordnlp/imdb columns.
SOURCE = {"text_column": "text", "label_column": "label", "label_names": ["neg", "pos"]}


@pytest.mark.imdb
def test_real_imdb_loads_validates_samples_and_tokenizes(
    imdb_dir: Path, gpt2_tokenizer_dir: Path
) -> None:
    partitions = PartitionedDataset(
        path=str(imdb_dir), dataset="pandas.ParquetDataset", filename_suffix=".parquet"
    ).load()

    raw = load_raw_splits(partitions, SOURCE)
    assert {split: len(raw[split].frame) for split in raw} == {
        "train": 25_000,
        "test": 25_000,
    }

    clean, report, names = validate_and_clean(
        raw, SOURCE, {"html_line_breaks_to_newlines": True}
    )
    assert names == ["neg", "pos"]
    train, test = report["splits"]["train"], report["splits"]["test"]
    assert train["labels_before"] == {"neg": 12_500, "pos": 12_500}
    # 96 exact duplicates, plus one pair that differs only in <br /> / whitespace.
    assert train["removed"] == {
        "empty_text": 0,
        "duplicate": 97,
        "conflicting_labels": 0,
        "in_test_split": 123,
    }
    assert test["removed"] == {
        "empty_text": 0,
        "duplicate": 199,
        "conflicting_labels": 0,
    }
    assert (train["rows_after"], test["rows_after"]) == (24_780, 24_801)
    # Two train reviews hold control characters: one \x10, one four backspaces.
    assert train["cleaned"] == {
        "reviews_with_control_characters": 2,
        "ansi_escape_sequences": 0,
        "control_characters": 5,
    }
    assert test["cleaned"]["reviews_with_control_characters"] == 0
    assert report["warnings"] == []
    assert not clean["train"]["text"].str.contains("[\x00-\x08]", regex=True).any()
    assert not set(clean["train"]["text"]) & set(clean["test"]["text"])
    assert not clean["train"]["text"].str.contains("<br", regex=False).any()

    # The reference lab's 1,000 train / 500 eval, plus 500 validation from train.
    train_reviews, validation_reviews, test_reviews = sample_splits(
        clean, {"train_size": 1_000, "validation_size": 500, "test_size": 500}, seed=42
    )
    # Stratified: each sample keeps its pool's label shares (about half and half
    # after the removals) to within one review.
    for sample, pool in ((train_reviews, "train"), (test_reviews, "test")):
        positive_share = clean[pool]["label"].mean()
        assert abs(sample["label"].sum() - positive_share * len(sample)) <= 1
    assert set(train_reviews["row_id"]).isdisjoint(validation_reviews["row_id"])

    model = {
        "source": "local",
        "name_or_path": str(gpt2_tokenizer_dir),
        "max_length": 512,
    }
    tokenized, summary = tokenize_splits(
        train_reviews, validation_reviews, test_reviews, model, {"batch_size": 1_000}
    )
    assert [len(tokenized[split]) for split in ("train", "validation", "test")] == [
        1_000,
        500,
        500,
    ]
    assert max(tokenized["train"]["length"]) == 512
    # measured-here.md: median 222 GPT-2 tokens, 13.6% over 512 on all 25k train.
    assert 180 < summary["train"]["p50"] < 270
    assert 0.09 < summary["train"]["share_truncated"] < 0.18
    assert summary["train"]["truncated"] == round(
        summary["train"]["share_truncated"] * 1_000
    )
    # Truncated reviews keep exactly 512 tokens (a review of exactly 512 does too).
    assert summary["train"]["truncated"] <= sum(
        length == 512 for length in tokenized["train"]["length"]
    )
    # No padding: GPT-2's pad token falls back to EOS (50256), which no review contains.
    assert all(50256 not in ids for ids in tokenized["train"]["input_ids"])
