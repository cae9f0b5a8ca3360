"""The data_processing pipeline end to end in the ``test`` environment."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from datasets import load_from_disk


def test_registry_lists_data_processing_and_default(project_root: Path) -> None:
    from kedro.framework.project import pipelines
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project_root)
    assert "data_processing" in pipelines
    default_nodes = {node.name for node in pipelines["__default__"].nodes}
    assert {node.name for node in pipelines["data_processing"].nodes} <= default_nodes


def test_run_in_test_env_writes_the_catalog_contract(
    run_kedro: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    run_kedro(env="test", pipeline_names=["data_processing"])

    data = tmp_path / "data"
    report = json.loads((data / "08_reporting/data_quality_report.json").read_text())
    train_report = report["splits"]["train"]
    # The bundled corpus has 3 exact duplicates in train and 2 train/test overlaps.
    assert train_report["rows_before"] == 240
    assert train_report["removed"]["duplicate"] == 3
    assert train_report["removed"]["in_test_split"] == 2
    assert train_report["rows_after"] == 235
    assert report["splits"]["test"]["rows_after"] == 100
    assert json.loads((data / "03_primary/label_names.json").read_text()) == [
        "negative",
        "positive",
    ]

    samples = {
        split: pd.read_parquet(data / f"03_primary/{split}_reviews.parquet")
        for split in ("train", "validation", "test")
    }
    assert {split: len(frame) for split, frame in samples.items()} == {
        "train": 64,
        "validation": 16,
        "test": 32,
    }
    for frame in samples.values():
        assert list(frame.columns) == ["row_id", "text", "label"]
        assert str(frame["row_id"].dtype) == "int64"
        assert str(frame["label"].dtype) == "int64"
        assert frame["label"].value_counts().min() >= len(frame) // 2 - 1
    assert set(samples["train"]["row_id"]).isdisjoint(samples["validation"]["row_id"])
    assert not set(samples["train"]["text"]) & set(samples["test"]["text"])

    tokenized = load_from_disk(str(data / "05_model_input/tokenized_reviews"))
    assert set(tokenized) == {"train", "validation", "test"}
    for split, frame in samples.items():
        assert tokenized[split]["row_id"] == frame["row_id"].tolist()
        assert tokenized[split]["labels"] == frame["label"].tolist()
        assert max(tokenized[split]["length"]) <= 128  # conf/test model.max_length
    summary = json.loads((data / "08_reporting/token_length_summary.json").read_text())
    assert summary["max_length"] == 128
    assert summary["train"]["reviews"] == 64
    assert summary["train"]["tokens_kept"] == sum(tokenized["train"]["length"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"label_column": "stars"}, "no column(s) ['stars']"),
        # Swapped columns: every "label" is a review text, outside the mapping.
        ({"text_column": "sentiment", "label_column": "review"}, "labels outside"),
    ],
)
def test_bad_input_stops_the_run_before_any_output(
    run_kedro: Callable[..., dict[str, Any]],
    tmp_path: Path,
    override: dict[str, Any],
    message: str,
) -> None:
    source = {
        "text_column": "review",
        "label_column": "sentiment",
        "label_mapping": {"negative": 0, "positive": 1},
        "label_names": ["negative", "positive"],
        "train_split": "train",
        "test_split": "test",
    }
    with pytest.raises(ValueError) as error:
        run_kedro(
            env="test",
            pipeline_names=["data_processing"],
            runtime_params={"data_processing": {"source": {**source, **override}}},
        )
    assert message in str(error.value)
    assert "raw_reviews split 'train'" in str(error.value)
    written = [path for path in (tmp_path / "data").rglob("*") if path.is_file()]
    assert written == []
