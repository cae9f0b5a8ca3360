"""Which checkpoint ``resume: auto`` picks, and what starting afresh removes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_finetuning.pipelines.training import checkpoints


def write_checkpoint(folder: Path, step: int, *, complete: bool = True) -> Path:
    checkpoint = folder / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    (checkpoint / "model.safetensors").write_bytes(b"weights")
    (checkpoint / "optimizer.pt").write_bytes(b"optimizer")
    state = json.dumps({"global_step": step})
    # A kill while saving leaves the state (written last) missing or cut short.
    (checkpoint / "trainer_state.json").write_text(state if complete else state[:5])
    return checkpoint


def test_the_highest_complete_checkpoint_wins(tmp_path):
    write_checkpoint(tmp_path, 10)
    write_checkpoint(tmp_path, 20)
    write_checkpoint(tmp_path, 30, complete=False)
    (tmp_path / "checkpoint-40").mkdir()  # the kill came before any file
    (tmp_path / "checkpoint-notes").mkdir()

    assert checkpoints.last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-20"
    assert [p.name for p in checkpoints.checkpoint_folders(tmp_path)] == [
        "checkpoint-40",
        "checkpoint-30",
        "checkpoint-20",
        "checkpoint-10",
    ]


def test_resume_auto_only_continues_the_same_unfinished_run(tmp_path):
    write_checkpoint(tmp_path, 10)
    checkpoints.prepare(tmp_path, "run-a", resume_from=tmp_path / "checkpoint-10")

    assert (
        checkpoints.resume_point(tmp_path, "run-a", "auto")
        == tmp_path / "checkpoint-10"
    )
    assert checkpoints.resume_point(tmp_path, "run-b", "auto") is None
    assert checkpoints.resume_point(tmp_path, "run-a", "never") is None

    checkpoints.finish(tmp_path, "run-a", keep=True)
    assert checkpoints.resume_point(tmp_path, "run-a", "auto") is None
    assert (tmp_path / "checkpoint-10").is_dir()

    checkpoints.finish(tmp_path, "run-a", keep=False)
    assert not (tmp_path / "checkpoint-10").exists()


def test_an_explicit_checkpoint_must_be_complete(tmp_path):
    complete = write_checkpoint(tmp_path, 10)
    partial = write_checkpoint(tmp_path, 20, complete=False)
    assert checkpoints.resume_point(tmp_path, "any", str(complete)) == complete
    with pytest.raises(ValueError, match="is not a complete checkpoint"):
        checkpoints.resume_point(tmp_path, "any", str(partial))


def test_prepare_removes_only_checkpoints(tmp_path):
    write_checkpoint(tmp_path, 10)
    write_checkpoint(tmp_path, 20, complete=False)
    (tmp_path / "notes.txt").write_text("mine")

    checkpoints.prepare(tmp_path, "run-a", resume_from=tmp_path / "checkpoint-10")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint-10",
        "notes.txt",
        "run.json",
    ]

    checkpoints.prepare(tmp_path, "run-b", resume_from=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "run.json"]
    assert json.loads((tmp_path / "run.json").read_text()) == {
        "fingerprint": "run-b",
        "finished": False,
    }
