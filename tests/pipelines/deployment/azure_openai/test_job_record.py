"""The job record: atomic saves, the request identity, matching listed jobs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from llm_finetuning.datasets import _atomic
from llm_finetuning.pipelines.deployment.azure_openai.job_record import (
    JobRecordDataset,
    identity_changes,
    job_identity,
    job_matches,
    upload_filename,
)


def test_the_job_record_is_empty_before_the_first_job_and_replaced_atomically(
    tmp_path, monkeypatch
):
    path = tmp_path / "records" / "job_record.json"
    record = JobRecordDataset(filepath=str(path))
    previous = JobRecordDataset(filepath=str(path), read_only=True)
    assert previous.load() == {} and not previous.exists()
    record.save({"job_id": "ftjob-1", "status": "running"})
    assert previous.load() == {"job_id": "ftjob-1", "status": "running"}
    with pytest.raises(Exception, match="read_only"):
        previous.save({"job_id": "ftjob-2"})

    def crash(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr(_atomic.os, "replace", crash)
    with pytest.raises(Exception, match="disk full"):
        record.save({"job_id": "ftjob-3"})
    monkeypatch.undo()
    assert previous.load()["job_id"] == "ftjob-1"  # the old record, whole
    assert [p.name for p in path.parent.iterdir()] == ["job_record.json"]
    path.write_text("{half")
    with pytest.raises(Exception, match=r"job_record.json is not valid JSON"):
        previous.load()
    with pytest.raises(ValueError, match="only local or mounted paths"):
        JobRecordDataset(filepath="s3://bucket/job_record.json")


def test_the_job_identity_names_what_changed():
    request = {"model": "gpt-4o-mini", "hyperparameters": {"n_epochs": 2}, "seed": 1}
    before = job_identity(request, "a", "b", "https://x.openai.azure.com/")
    assert before["endpoint"] == "https://x.openai.azure.com"
    after = job_identity(
        {**request, "hyperparameters": {"n_epochs": 3}, "training_file": "file-9"},
        "a changed",
        "b",
        "https://x.openai.azure.com",
    )
    assert identity_changes(before, after) == [
        "request.hyperparameters",
        "training_file_sha256",
    ]
    assert upload_filename("train", b"x") == "train-2d711642b726.jsonl"


def test_a_listed_job_matches_its_request_hyperparameters_compared_as_numbers():
    job = SimpleNamespace(
        training_file="f1",
        validation_file=None,
        model="gpt-4o-mini",
        seed=42,
        suffix="imdb",
        hyperparameters=SimpleNamespace(n_epochs=2, learning_rate_multiplier=0.1),
    )
    request = {"training_file": "f1", "model": "gpt-4o-mini", "seed": 42}
    assert job_matches(job, {**request, "hyperparameters": {"n_epochs": 2.0}})
    assert not job_matches(job, {**request, "hyperparameters": {"n_epochs": 3}})
    assert not job_matches(job, {**request, "suffix": "other"})
    assert not job_matches(job, {**request, "training_file": "f2"})
