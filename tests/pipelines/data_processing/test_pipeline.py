"""The data_processing pipeline end to end in the ``test`` environment."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from datasets import load_from_disk
from kedro.io import DatasetError


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
    assert train_report["cleaned"]["reviews_with_control_characters"] == 0
    assert report["splits"]["test"]["rows_after"] == 600
    assert report["warnings"] == []
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
    # The report counts what truncation cut, with the max_length tokenization used.
    assert report["samples"]["max_length"] == 128
    for split, frame in samples.items():
        untruncated = summary[split]
        assert report["samples"][split]["reviews"] == len(frame)
        assert report["samples"][split]["truncated"] == untruncated["truncated"]
        assert sum(report["samples"][split]["labels"].values()) == len(frame)
    # Truncated reviews keep exactly 128 tokens (a review of exactly 128 does too).
    assert (
        0
        < report["samples"]["train"]["truncated"]
        <= sum(length == 128 for length in tokenized["train"]["length"])
    )


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


def test_a_one_class_configuration_stops_the_run_before_any_output(
    run_kedro: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    """Every raw label maps to class 0: the run must not train a one-class model."""
    source = {
        "text_column": "review",
        "label_column": "sentiment",
        "label_mapping": {"negative": 0, "positive": 0},
        "label_names": ["negative"],
        "train_split": "train",
        "test_split": "test",
    }
    with pytest.raises(ValueError, match=r"defines 1 class\(es\) \['negative'\]"):
        run_kedro(
            env="test",
            pipeline_names=["data_processing"],
            runtime_params={"data_processing": {"source": source}},
        )
    assert [path for path in (tmp_path / "data").rglob("*") if path.is_file()] == []


def _latin_1_reviews_csv(path: Path) -> None:
    """The bundled train corpus as one CSV in latin-1, with accented letters."""
    corpus = pd.read_json(
        files("llm_finetuning") / "demo_data" / "train.jsonl", lines=True
    )
    corpus["review"] = corpus["review"].str.replace("film", "fïlm", regex=False)
    path.parent.mkdir(parents=True)
    # The corpus has a few characters latin-1 lacks (dashes): "?" stands for them.
    corpus.to_csv(path, index=False, encoding="latin-1", errors="replace")


def _run_with_raw_reviews(
    project_root: Path, tmp_path: Path, raw_reviews: dict[str, Any]
) -> dict[str, Any]:
    """A real KedroSession run (``test`` env) whose ``raw_reviews`` is ``raw_reviews``.

    ``run_kedro`` reads the repository's conf/, so this copies base/ and test/ to
    change one catalog entry. ``EncodingHintHooks`` comes from settings.py.
    """
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    conf = tmp_path / "conf"
    for env in ("base", "test"):
        shutil.copytree(project_root / "conf" / env, conf / env, dirs_exist_ok=True)
    (conf / "test" / "catalog_data_processing.yml").write_text(
        yaml.safe_dump({"raw_reviews": raw_reviews})
    )
    bootstrap_project(project_root)
    with KedroSession.create(
        project_path=tmp_path,
        env="test",
        conf_source=str(conf),
        # One labelled table: test is carved from it.
        runtime_params={"data_processing": {"source": {"test_split": None}}},
    ) as session:
        return session.run(pipeline_names=["data_processing"])


def test_a_latin_1_csv_stops_the_run_with_the_encoding_to_set(
    project_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    csv = tmp_path / "data" / "01_raw" / "reviews.csv"
    _latin_1_reviews_csv(csv)
    entry = {"type": "pandas.CSVDataset", "filepath": "data/01_raw/reviews.csv"}

    with pytest.raises(DatasetError) as error:
        _run_with_raw_reviews(project_root, tmp_path, entry)

    message = str(error.value)
    assert "'utf-8' codec can't decode byte 0xef" in message
    assert f"Catalog entry 'raw_reviews' (file {csv.as_posix()})" in message
    assert "load_args: {encoding: ...}" in message
    written = [path for path in (tmp_path / "data").rglob("*") if path.is_file()]
    assert written == [csv]

    # What the message says to do makes the same file load.
    _run_with_raw_reviews(
        project_root, tmp_path, {**entry, "load_args": {"encoding": "latin-1"}}
    )
    report = json.loads(
        (tmp_path / "data/08_reporting/data_quality_report.json").read_text()
    )
    assert report["splits"]["train"]["rows_before"] == 240
    texts = pd.read_parquet(tmp_path / "data/03_primary/train_reviews.parquet")["text"]
    assert texts.str.contains("fïlm").any()


def test_a_train_file_of_one_class_stops_the_run_before_any_output(
    project_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    csv = tmp_path / "data" / "01_raw" / "reviews.csv"
    csv.parent.mkdir(parents=True)
    corpus = pd.read_json(
        files("llm_finetuning") / "demo_data" / "train.jsonl", lines=True
    )
    positive = corpus[corpus["sentiment"] == "positive"]
    positive.to_csv(csv, index=False)
    entry = {"type": "pandas.CSVDataset", "filepath": "data/01_raw/reviews.csv"}

    with pytest.raises(ValueError) as error:
        _run_with_raw_reviews(project_root, tmp_path, entry)

    message = str(error.value)
    assert message.startswith("raw_reviews split 'train': the train split has reviews")
    assert f"{{'negative': 0, 'positive': {positive['review'].nunique()}}}" in message
    written = [path for path in (tmp_path / "data").rglob("*") if path.is_file()]
    assert written == [csv]
