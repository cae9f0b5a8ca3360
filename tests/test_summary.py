"""The run summary: plain lines naming what was saved, how good, and what comes next."""

from __future__ import annotations

from kedro.io import MemoryDataset
from kedro_datasets.json import JSONDataset

from llm_finetuning.summary import dataset_location, summary_lines

METRICS = {
    "n_examples": 32,
    "metrics": {
        "accuracy": {"value": 0.8125, "ci_low": 0.65, "ci_high": 0.94},
        "f1_macro": {"value": 0.8, "ci_low": 0.6, "ci_high": 0.93},
    },
}
RUN = {
    "experiment": "llm_finetuning",
    "run_id": "abc123",
    "tracking_uri": "sqlite:///m.db",
}


def test_a_finished_run_says_what_it_made_and_what_to_run_next():
    lines = summary_lines(
        pipelines=["evaluation"],
        env="demo",
        saved={
            "evaluation_metrics": "data/08_reporting/evaluation_metrics.json",
            "cleaning_report": None,  # in memory: not listed
        },
        evaluation_metrics=METRICS,
        baselines_table="# title\n\n| model | accuracy |\n| tfidf | 0.77 |",
        mlflow_run=RUN,
    )
    text = "\n".join(lines)
    assert lines[0] == "Run summary: pipelines evaluation, env demo"
    assert "  evaluation_metrics: data/08_reporting/evaluation_metrics.json" in lines
    assert not any("cleaning_report" in line for line in lines)
    assert (
        "Fine-tuned model: accuracy 0.812 [0.650, 0.940], f1_macro 0.800 "
        "[0.600, 0.930] on 32 test rows (95% intervals)"
    ) in lines
    assert "  | tfidf | 0.77 |" in lines
    assert (
        "run abc123; open it with: mlflow ui --backend-store-uri sqlite:///m.db" in text
    )
    assert lines[-1] == "Next: kedro run --pipelines deployment"
    assert "\x1b" not in text


def test_a_failed_run_names_the_error_and_the_rerun():
    lines = summary_lines(
        pipelines=["training"],
        env=None,
        saved={},
        evaluation_metrics=None,
        baselines_table=None,
        mlflow_run=None,
        error=RuntimeError("disk full"),
    )
    assert lines[0].endswith("env local: FAILED (RuntimeError: disk full)")
    assert "Saved: nothing" in lines
    assert lines[-1].startswith("Next: fix the cause and run the same command again")


def test_dataset_locations_come_from_the_dataset():
    assert dataset_location(JSONDataset(filepath="data/x.json")).endswith("data/x.json")
    assert dataset_location(MemoryDataset()) is None
