"""Lineage: fingerprints, the manifest and stale outputs, and runs linked in MLflow."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict, load_from_disk

from llm_finetuning.datasets import TextClassifier, TextClassifierDataset
from llm_finetuning.datasets.model_folder import METADATA_FILE
from llm_finetuning.lineage import (
    Lineage,
    data_fingerprint,
    is_stale,
    read_manifest,
    record_outputs,
    split_digest,
    stale_outputs,
    weights_fingerprint,
    write_manifest,
)
from llm_finetuning.summary import STALE_HEADING, summary_lines
from tests.conftest import demo_tokenizer
from tests.kedro_process import make_project, run_kedro
from tests.pipelines.evaluation.conftest import tiny_gpt2_classifier


def _splits(train_ids: list[list[int]], labels: list[int]) -> DatasetDict:
    return DatasetDict(
        {
            "train": Dataset.from_dict(
                {
                    "input_ids": train_ids,
                    "attention_mask": [[1] * len(ids) for ids in train_ids],
                    "labels": labels,
                }
            ),
            "test": Dataset.from_dict({"input_ids": [[5, 6]], "labels": [1]}),
        }
    )


def test_the_data_fingerprint_follows_the_tokens_and_labels_not_the_storage(tmp_path):
    splits = _splits([[1, 2], [3]], [0, 1])
    splits.save_to_disk(tmp_path / "tokenized")
    reloaded = load_from_disk(str(tmp_path / "tokenized"))

    assert data_fingerprint(reloaded) == data_fingerprint(splits)
    assert data_fingerprint(_splits([[1, 2], [3]], [0, 1])) == data_fingerprint(splits)
    # A token moved to the next review, a changed label, a changed token: other data.
    others = [
        _splits([[1], [2, 3]], [0, 1]),
        _splits([[1, 2], [3]], [1, 1]),
        _splits([[1, 2], [4]], [0, 1]),
    ]
    fingerprints = {data_fingerprint(s) for s in others} | {data_fingerprint(splits)}
    assert len(fingerprints) == 4


def test_split_digest_keeps_the_training_resume_fingerprint_of_earlier_releases():
    """The trainer hashes labels and lengths through split_digest: old checkpoint
    folders' run.json must still match, so the bytes hashed are those of before."""
    split = Dataset.from_dict({"labels": [0, 1, 1, 0], "length": [3, 5, 2, 7]}).shuffle(
        seed=1
    )  # an index mapping, as after sampling
    table = split.with_format("arrow")
    before = hashlib.sha256()
    for column in ("labels", "length"):
        before.update(np.asarray(table[column], dtype=np.int64).tobytes())
    assert split_digest(split, ("labels", "length")) == before.hexdigest()


@pytest.fixture
def classifier() -> TextClassifier:
    return tiny_gpt2_classifier(demo_tokenizer(max_length=32), ["negative", "positive"])


def test_the_model_folder_records_the_fingerprint_of_its_weights(tmp_path, classifier):
    classifier.metadata["lineage"] = {"training_run_id": "r1", "data_fingerprint": "d"}
    dataset = TextClassifierDataset(path=str(tmp_path / "model"))
    dataset.save(classifier)

    fingerprint = weights_fingerprint(tmp_path / "model")
    on_disk = json.loads((tmp_path / "model" / METADATA_FILE).read_text())["lineage"]
    assert on_disk == {
        "training_run_id": "r1",
        "data_fingerprint": "d",
        "model_fingerprint": fingerprint,
    }
    assert classifier.metadata["lineage"] == on_disk  # what was saved says the same
    assert dataset.load().metadata["lineage"] == on_disk

    # Other weights, other fingerprint.
    with torch.no_grad():
        classifier.model.score.weight[0, 0] += 1.0
    TextClassifierDataset(path=str(tmp_path / "other")).save(classifier)
    assert weights_fingerprint(tmp_path / "other") != fingerprint

    # A folder saved before lineage existed gets its fingerprint when loaded.
    (tmp_path / "model" / METADATA_FILE).write_text("{}")
    loaded = dataset.load().metadata["lineage"]
    assert loaded == {"model_fingerprint": fingerprint}


NOW = Lineage(data_fingerprint="d2", model_fingerprint="m2", training_run_id="t2")


@pytest.mark.parametrize(
    ("entry", "stale"),
    [
        ({"data_fingerprint": "d2", "model_fingerprint": "m2"}, False),
        ({"data_fingerprint": "d2", "model_fingerprint": "m1"}, True),  # old model
        ({"data_fingerprint": "d1", "model_fingerprint": None}, True),  # old data
        ({"data_fingerprint": "d2", "model_fingerprint": None}, False),  # a baseline
        ({}, False),  # nothing known: nothing to compare
    ],
)
def test_an_output_is_stale_when_its_data_or_model_differs(entry, stale):
    assert is_stale(entry, NOW) is stale


def test_only_data_is_compared_in_a_run_without_a_model():
    data_processing = Lineage(data_fingerprint="d2")
    evaluated = {"data_fingerprint": "d2", "model_fingerprint": "m1"}
    assert not is_stale(evaluated, data_processing)
    assert is_stale(evaluated, Lineage(data_fingerprint="d3"))


def test_the_manifest_records_outputs_and_lists_the_stale_ones(tmp_path):
    manifest = tmp_path / "08_reporting" / "lineage.json"
    old = Lineage(data_fingerprint="d2", model_fingerprint="m1", training_run_id="t1")
    write_manifest(
        manifest,
        {
            "metrics.json": old.to_dict(),
            "plot.png": old.to_dict(),
            "baseline.json": old.without_model().to_dict(),
            "deleted.json": old.to_dict(),
        },
    )
    existing = {"metrics.json", "plot.png", "baseline.json", "model"}

    outputs = record_outputs(
        read_manifest(manifest), {"model": NOW}, exists=existing.__contains__
    )
    assert "deleted.json" not in outputs  # gone files are forgotten
    assert outputs["model"]["model_fingerprint"] == "m2"
    assert stale_outputs(outputs, NOW, written=["model"]) == [
        "metrics.json",
        "plot.png",
    ]

    write_manifest(manifest, outputs)
    assert read_manifest(manifest) == outputs
    assert [p.name for p in manifest.parent.iterdir()] == ["lineage.json"]


def test_an_unreadable_manifest_reads_as_empty(tmp_path):
    (tmp_path / "lineage.json").write_text("{not json")
    assert read_manifest(tmp_path / "lineage.json") == {}
    assert read_manifest(tmp_path / "absent.json") == {}


def test_the_summary_says_the_lineage_and_lists_stale_outputs():
    lines = summary_lines(
        pipelines=["training"],
        env="local",
        saved={"fine_tuned_model": "data/06_models/fine_tuned_model"},
        evaluation_metrics=None,
        baselines_table=None,
        mlflow_run=None,
        lineage=NOW,
        stale=["data/08_reporting/evaluation_metrics.json"],
    )
    assert "Lineage: data d2, model m2 trained in MLflow run t2" in lines
    heading = lines.index(STALE_HEADING)
    assert lines[heading + 1] == "  data/08_reporting/evaluation_metrics.json"


def test_only_outputs_downstream_of_the_model_carry_its_fingerprint():
    from kedro.pipeline import Node, Pipeline

    from llm_finetuning.hooks import LineageHooks

    def step(*inputs):
        return None

    pipeline = Pipeline(
        [
            Node(step, ["model", "test_reviews"], "predictions", name="predict"),
            Node(step, "predictions", "metrics", name="score"),
            Node(step, "test_reviews", "baseline_metrics", name="baseline"),
            Node(step, ["metrics", "baseline_metrics"], "comparison", name="compare"),
        ]
    )
    hooks = LineageHooks()
    hooks.before_pipeline_run({"pipeline_names": ["evaluation"]}, pipeline, None)
    hooks._model_datasets.add("model")
    assert hooks._model_dependent() == {"predictions", "metrics", "comparison"}


def _run(project: Path, pipelines: str, *extra: str) -> str:
    args = ("run", "--env", "test", "--pipelines", pipelines, *extra)
    return run_kedro(project, *args, log_name=pipelines.replace(",", "+"))


def _stale_section(log: str) -> list[str]:
    lines = log.splitlines()
    if STALE_HEADING not in lines:
        return []
    listed = []
    for line in lines[lines.index(STALE_HEADING) + 1 :]:
        if not line.startswith("  "):
            break
        listed.append(line.strip())
    return listed


@pytest.mark.slow
def test_separate_runs_are_linked_and_a_retrain_flags_old_reports_stale(tmp_path):
    """data_processing, training and evaluation as three ``kedro run`` processes,
    then data_processing and training again on other data."""
    project = make_project(tmp_path / "project")
    _run(project, "data_processing")
    _run(project, "training")
    _run(project, "evaluation")

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    runs = {
        run.info.run_name: run
        for run in mlflow.search_runs(search_all_experiments=True, output_format="list")
    }
    assert set(runs) == {"data_processing", "training", "evaluation"}
    data, training, evaluation = (
        runs[name].data.tags for name in ("data_processing", "training", "evaluation")
    )
    training_id = runs["training"].info.run_id
    evaluation_id = runs["evaluation"].info.run_id

    # The evaluation run names the training run and the model it evaluated.
    assert evaluation["lineage.training_run_id"] == training_id
    model_folder = project / "data/06_models/fine_tuned_model"
    model_fingerprint = weights_fingerprint(model_folder)
    assert training["lineage.model_fingerprint"] == model_fingerprint
    assert evaluation["lineage.model_fingerprint"] == model_fingerprint
    fingerprints = {t["lineage.data_fingerprint"] for t in (data, training, evaluation)}
    assert len(fingerprints) == 1
    saved = json.loads((model_folder / METADATA_FILE).read_text())["lineage"]
    assert saved == {
        "training_run_id": training_id,
        "data_fingerprint": data["lineage.data_fingerprint"],
        "model_fingerprint": model_fingerprint,
    }

    # The training run links to its evaluation and holds its metrics.
    training_run = client.get_run(training_id)
    assert training_run.data.tags["lineage.evaluation_run_id"] == evaluation_id
    assert training_run.data.tags[f"lineage.used_by.{evaluation_id}"] == "evaluation"
    assert training_run.data.metrics["evaluation.test.accuracy"] == pytest.approx(
        runs["evaluation"].data.metrics["evaluation.test.accuracy"]
    )

    manifest = read_manifest(project / "data/08_reporting/lineage.json")
    report = manifest["data/08_reporting/evaluation_metrics.json"]
    assert report["model_fingerprint"] == model_fingerprint
    assert report["produced_by_run_id"] == evaluation_id
    assert manifest["data/08_reporting/roc_curve.png"] == report
    baseline = manifest["data/08_reporting/baselines/tfidf_logreg_metrics.json"]
    assert baseline["model_fingerprint"] is None  # the baselines need no model

    # Other data, a new model: yesterday's evaluation is flagged, today's is not.
    log = _run(
        project,
        "data_processing,training",
        "--params",
        "data_processing.sampling.train_size=48",
    )
    stale = _stale_section(log)
    for path in (
        "data/08_reporting/evaluation_metrics.json",
        "data/08_reporting/confusion_matrix.png",
        "data/08_reporting/baseline_comparison.md",
        "data/07_model_output/test_predictions.parquet",
        "data/08_reporting/baselines/tfidf_logreg_metrics.json",  # old data
    ):
        assert path in stale, (path, stale)
    assert "data/06_models/fine_tuned_model" not in stale
    assert "data/08_reporting/training_metrics.json" not in stale
