"""A few training steps on a small slice of the real IMDB reviews."""

from __future__ import annotations

import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset, DatasetDict

from llm_finetuning.models import ModelParams, load_tokenizer
from llm_finetuning.pipelines.training.nodes import fit


def tokenized_slice(path, rows: int, tokenizer) -> Dataset:
    """The first ``rows`` reviews of ``path``, tokenized as data_processing does."""
    # Both labels appear in the slice: the files are sorted by label, so read both ends.
    table = pq.read_table(path, columns=["text", "label"])
    half = rows // 2
    table = pa.concat_tables([table.slice(0, half), table.slice(len(table) - half)])
    encoded = tokenizer(table["text"].to_pylist(), truncation=True)
    return Dataset.from_dict(
        {
            "row_id": list(range(len(table))),
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
            "labels": table["label"].to_pylist(),
            "length": [len(ids) for ids in encoded["input_ids"]],
        }
    )


@pytest.mark.imdb
def test_a_few_steps_on_real_reviews(
    imdb_dir, model_params, training_params, runtime_params
):
    tokenizer = load_tokenizer(ModelParams.model_validate(model_params))
    reviews = DatasetDict(
        train=tokenized_slice(imdb_dir / "train.parquet", 64, tokenizer),
        validation=tokenized_slice(imdb_dir / "test.parquet", 32, tokenizer),
    )
    assert max(reviews["train"]["length"]) == model_params["max_length"]  # truncated

    classifier, metrics = fit(
        reviews, ["neg", "pos"], model_params, training_params(), runtime_params
    )

    assert classifier.label_names == ["neg", "pos"]
    assert metrics["global_step"] == 8
    assert all(math.isfinite(e["loss"]) for e in metrics["history"]["train"])
    assert 0 <= metrics["history"]["eval"][-1]["eval_accuracy"] <= 1
    # Length-grouped batches of real reviews keep padding small.
    assert metrics["throughput"]["padding_share"] < 0.3
