"""Folder outputs are replaced whole, and what killed saves left is cleared."""

from __future__ import annotations

import pytest

from llm_finetuning.datasets._atomic import atomic_directory, clean_interrupted_saves


def write_folder(path, text: str) -> None:
    path.mkdir(parents=True)
    (path / "weights").write_text(text)


def test_a_failed_save_leaves_the_old_folder_and_no_scratch(tmp_path):
    target = tmp_path / "model"
    write_folder(target, "old")
    with pytest.raises(RuntimeError), atomic_directory(target) as scratch:
        (scratch / "weights").write_text("half")
        raise RuntimeError("disk full")
    assert (target / "weights").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_the_next_save_clears_the_scratch_of_a_killed_save(tmp_path):
    target = tmp_path / "model"
    write_folder(target, "old")
    write_folder(tmp_path / ".model.tmp-deadbeef", "half")  # SIGKILL mid-save
    write_folder(tmp_path / ".other.tmp-deadbeef", "not ours")
    with atomic_directory(target) as scratch:
        (scratch / "weights").write_text("new")
    assert (target / "weights").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".other.tmp-deadbeef",
        "model",
    ]


def test_a_kill_between_the_renames_puts_the_old_folder_back(tmp_path):
    target = tmp_path / "model"
    write_folder(tmp_path / ".model.old-deadbeef", "old")  # target already moved away
    write_folder(tmp_path / ".model.tmp-deadbeef", "new, not yet renamed")
    removed = clean_interrupted_saves(target)
    assert (target / "weights").read_text() == "old"
    assert [p.name for p in removed] == [".model.tmp-deadbeef"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
