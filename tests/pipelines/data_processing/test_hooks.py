"""``EncodingHintHooks``: a file that is not UTF-8 names itself and the fix."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from kedro.io import DataCatalog, DatasetError

from llm_finetuning.pipelines.data_processing.hooks import EncodingHintHooks

LATIN_1_CSV = "review,sentiment\nUn film très réussi,positive\n".encode("latin-1")


def catalog_of(entry: dict[str, object]) -> DataCatalog:
    catalog = DataCatalog.from_config({"raw_reviews": entry})
    EncodingHintHooks().after_catalog_created(catalog)
    return catalog


def test_a_latin_1_csv_names_the_file_and_the_encoding_option(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_bytes(LATIN_1_CSV)
    catalog = catalog_of({"type": "pandas.CSVDataset", "filepath": str(path)})

    with pytest.raises(DatasetError) as error:
        catalog.load("raw_reviews")

    message = str(error.value)
    assert "'utf-8' codec can't decode byte 0xe8" in message  # pandas' own error
    assert (
        f"Catalog entry 'raw_reviews' (file {path.as_posix()}) is not valid utf-8 "
        "text (byte b'\\xe8')"
    ) in message
    assert "'raw_reviews': load_args: {encoding: ...}" in message
    # The catalog's own error stays reachable as the cause.
    assert str(error.value.__cause__).startswith("raw_reviews: Failed while loading")


def test_the_encoding_it_asks_for_fixes_the_load(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_bytes(LATIN_1_CSV)
    catalog = catalog_of(
        {
            "type": "pandas.CSVDataset",
            "filepath": str(path),
            "load_args": {"encoding": "latin-1"},
        }
    )
    assert catalog.load("raw_reviews")["review"].tolist() == ["Un film très réussi"]


def test_a_dataset_opening_the_file_itself_is_told_about_fs_args(
    tmp_path: Path,
) -> None:
    path = tmp_path / "reviews.txt"
    path.write_bytes(LATIN_1_CSV)
    catalog = catalog_of({"type": "text.TextDataset", "filepath": str(path)})
    with pytest.raises(DatasetError, match=r"fs_args: \{open_args_load: \{encoding"):
        catalog.load("raw_reviews")


def test_other_load_errors_are_left_as_they_are(tmp_path: Path) -> None:
    catalog = catalog_of(
        {"type": "pandas.CSVDataset", "filepath": str(tmp_path / "missing.csv")}
    )
    with pytest.raises(DatasetError) as error:
        catalog.load("raw_reviews")
    assert str(error.value).startswith("raw_reviews: Failed while loading data")
    assert "No such file or directory" in str(error.value)
    assert "Catalog entry" not in str(error.value)


def test_wraps_once_and_the_catalog_still_pickles(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_bytes(LATIN_1_CSV)
    catalog = catalog_of({"type": "pandas.CSVDataset", "filepath": str(path)})
    EncodingHintHooks().after_catalog_created(catalog)  # e.g. registered twice

    copy = pickle.loads(pickle.dumps(catalog))

    for each in (catalog, copy):
        with pytest.raises(DatasetError) as error:
            each.load("raw_reviews")
        assert str(error.value).count("Catalog entry 'raw_reviews'") == 1
