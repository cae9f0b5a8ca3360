"""AclImdbDataset on a synthetic aclImdb folder and tarball built in tmp_path."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from kedro.io import DatasetError

from llm_finetuning.datasets import AclImdbDataset
from llm_finetuning.pipelines.data_processing.nodes import (
    DataValidationError,
    load_raw_splits,
    validate_and_clean,
)

REVIEWS = {
    "train/pos/10_9.txt": "Loved every minute.<br /><br />Would watch again.",
    "train/pos/2_7.txt": "Pretty good overall.",
    "train/neg/0_1.txt": "Dreadful from start to end.",
    "train/neg/1_3.txt": "Not for me.",
    "train/unsup/0_0.txt": "Unlabelled, skipped.",
    "train/urls_pos.txt": "http://www.imdb.com/title/tt0000001/usercomments",
    "test/pos/0_10.txt": "A masterpiece.",
    "test/neg/4_2.txt": "Boring and long.",
}


def write_acl_imdb(root: Path, reviews: dict[str, str | bytes] = REVIEWS) -> Path:
    folder = root / "aclImdb"
    for relative, text in reviews.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
    return folder


def make_tarball(root: Path, folder: Path) -> Path:
    tarball = root / "aclImdb_v1.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(folder, arcname="aclImdb")
    return tarball


@pytest.fixture
def acl_folder(tmp_path: Path) -> Path:
    return write_acl_imdb(tmp_path / "unpacked")


@pytest.mark.parametrize("where", ["folder", "parent", "tarball"])
def test_loads_each_split_ordered_by_label_and_id(
    tmp_path: Path, acl_folder: Path, where: str
) -> None:
    path = {
        "folder": acl_folder,
        "parent": acl_folder.parent,
        "tarball": make_tarball(tmp_path, acl_folder),
    }[where]

    splits = AclImdbDataset(path=str(path)).load()

    assert set(splits) == {"train", "test"}
    train = splits["train"]
    assert list(train.columns) == ["review_id", "rating", "label", "text", "file"]
    assert train["file"].tolist() == [
        "train/neg/0_1.txt",
        "train/neg/1_3.txt",
        "train/pos/2_7.txt",
        "train/pos/10_9.txt",
    ]
    assert train["rating"].tolist() == [1, 3, 7, 9]
    assert train["label"].tolist() == ["neg", "neg", "pos", "pos"]
    assert train["text"].iat[3] == REVIEWS["train/pos/10_9.txt"]
    assert splits["test"]["review_id"].tolist() == [4, 0]


def test_feeds_the_pipeline_with_the_folder_labels(acl_folder: Path) -> None:
    raw = load_raw_splits(
        AclImdbDataset(path=str(acl_folder)).load(),
        {"label_mapping": {"neg": 0, "pos": 1}},
    )
    clean, report, names = validate_and_clean(
        raw,
        {"label_mapping": {"neg": 0, "pos": 1}},
        {"html_line_breaks_to_newlines": True},
    )
    assert names == ["neg", "pos"]
    assert clean["train"]["label"].tolist() == [0, 0, 1, 1]
    assert clean["train"]["text"].iat[3] == "Loved every minute.\n\nWould watch again."
    assert report["splits"]["test"]["rows_after"] == 2


def test_star_ratings_can_be_the_labels(acl_folder: Path) -> None:
    by_rating = {
        "label_column": "rating",
        "label_mapping": {
            **dict.fromkeys(range(1, 5), 0),
            **dict.fromkeys(range(7, 11), 1),
        },
        "label_names": ["negative", "positive"],
    }
    raw = load_raw_splits(AclImdbDataset(path=str(acl_folder)).load(), by_rating)
    clean, _, _ = validate_and_clean(raw, by_rating, {})
    assert clean["train"]["label"].tolist() == [0, 0, 1, 1]


def test_an_empty_review_file_is_named_by_the_validation(tmp_path: Path) -> None:
    folder = write_acl_imdb(
        tmp_path, {**REVIEWS, "test/neg/5_1.txt": "", "test/pos/0_10.txt": " "}
    )
    params = {"label_mapping": {"neg": 0, "pos": 1}}
    raw = load_raw_splits(AclImdbDataset(path=str(folder)).load(), params)
    clean, report, _ = validate_and_clean(raw, params, {})
    assert report["splits"]["test"]["removed"]["empty_text"] == 2
    assert clean["test"]["text"].tolist() == ["Boring and long."]


def test_a_split_of_empty_files_names_them(tmp_path: Path) -> None:
    folder = write_acl_imdb(
        tmp_path, {**REVIEWS, "test/neg/4_2.txt": "", "test/pos/0_10.txt": ""}
    )
    params = {"label_mapping": {"neg": 0, "pos": 1}}
    raw = load_raw_splits(AclImdbDataset(path=str(folder)).load(), params)
    with pytest.raises(
        DataValidationError, match="no non-empty text in any of its 2 rows"
    ):
        validate_and_clean(raw, params, {})


def test_names_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    folder = write_acl_imdb(tmp_path, {**REVIEWS, "train/neg/7_2.txt": b"caf\xe9"})
    with pytest.raises(
        DatasetError, match=r"'train/neg/7_2.txt' .* is not valid UTF-8"
    ):
        AclImdbDataset(path=str(folder)).load()


def test_names_a_missing_split(tmp_path: Path) -> None:
    folder = write_acl_imdb(tmp_path, {"train/pos/0_9.txt": "Good."})
    with pytest.raises(DatasetError, match="has no reviews under test/pos or test/neg"):
        AclImdbDataset(path=str(folder)).load()


def test_names_a_missing_path_and_a_broken_tarball(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="No aclImdb folder or tarball"):
        AclImdbDataset(path=str(tmp_path / "nowhere")).load()
    broken = tmp_path / "aclImdb_v1.tar.gz"
    broken.write_bytes(b"not a tarball")
    with pytest.raises(DatasetError, match="Cannot read .* as an aclImdb tarball"):
        AclImdbDataset(path=str(broken)).load()


def test_is_read_only_and_describes_itself(acl_folder: Path) -> None:
    dataset = AclImdbDataset(path=str(acl_folder), splits=["test"])
    assert dataset.exists()
    assert "aclImdb" in str(dataset)
    assert set(dataset.load()) == {"test"}
    with pytest.raises(DatasetError, match="read-only"):
        dataset.save({})
