"""A real ``kedro run --pipelines scoring`` SIGKILLed after some chunks, then rerun.

The test env scores the 50 bundled unlabelled reviews in chunks of 16 (4 chunks). The
first run stops itself once chunk 1 is written (``--stop-after-chunk 1``) and is
killed with SIGKILL; the same command then scores only chunks 2 and 3, and its output
equals an uninterrupted run's in another project (the scoring time aside).
"""

from __future__ import annotations

import json
import signal

import pandas as pd
import pytest

from llm_finetuning.datasets import TextClassifierDataset
from tests.kedro_process import (
    kill_group,
    make_project,
    run_kedro,
    start_kedro,
    wait_until_stopped,
)
from tests.pipelines.scoring.conftest import tiny_classifier

SCORING = ("run", "--env", "test", "--pipelines", "scoring")
OUTPUT = "data/07_model_output/scored_texts.parquet"
PARTIAL = "data/07_model_output/.scoring_partial"


def _project(path, tokenizer):
    project = make_project(path)
    TextClassifierDataset(path=str(project / "data/06_models/fine_tuned_model")).save(
        tiny_classifier(tokenizer)
    )
    return project


@pytest.mark.slow
def test_a_killed_scoring_run_resumes_and_ends_like_an_uninterrupted_one(
    tmp_path, tokenizer
):
    reference = _project(tmp_path / "reference", tokenizer)
    run_kedro(reference, *SCORING)

    project = _project(tmp_path / "killed", tokenizer)
    with start_kedro(
        project, *SCORING, stop=("--stop-after-chunk", "1"), log_name="first"
    ) as process:
        wait_until_stopped(process, project, "first")
        kill_group(process, signal.SIGKILL)
    (job,) = (project / PARTIAL).iterdir()
    assert sorted(p.name for p in job.glob("chunk-*")) == [
        "chunk-000000.parquet",
        "chunk-000001.parquet",
    ]
    assert not (project / OUTPUT).exists()  # no half-written table

    log = run_kedro(project, *SCORING, log_name="second")

    assert "Resuming: 2 chunk(s)" in log
    report = json.loads((project / "data/08_reporting/scoring_report.json").read_text())
    assert report["chunks"] == 4 and report["chunks_resumed"] == 2
    assert report["rows"] == report["scored"] == 50
    resumed = pd.read_parquet(project / OUTPUT).drop(columns="scored_at")
    expected = pd.read_parquet(reference / OUTPUT).drop(columns="scored_at")
    pd.testing.assert_frame_equal(resumed, expected)
    assert not list((project / PARTIAL).iterdir())  # scratch cleared after the save
