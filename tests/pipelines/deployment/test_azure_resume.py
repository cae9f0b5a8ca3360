"""A billed Azure OpenAI fine-tuning job is never lost and never created twice.

Against the fake Azure server: a run that fails after the job was created (results
download, deployment, scoring) or is killed while the job is polled, then a rerun,
ends with exactly one job; a POST that took effect but answered 500 leaves exactly one
file and one job. The kill test runs a real ``kedro run`` in a child process group and
ends that group itself, whatever happens.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest

from tests.pipelines.deployment.fake_azure import FakeAzure

DEMO_DATA = Path(__file__).resolve().parents[3] / "src" / "llm_finetuning" / "demo_data"
LABEL_NAMES = ["negative", "positive"]
API_KEY = "resume-test-api-key"
ARM_TOKEN = "resume-test-arm-token"
RECORD = "data/06_models/azure_openai/job_record.json"
METRICS = "data/08_reporting/deployment/azure_openai_metrics.json"
JOB_POSTS = r"^/openai/fine_tuning/jobs$"
KEDRO_RUN_TIMEOUT_S = 300


def write_review_splits(folder: Path) -> None:
    """data_processing's outputs where the test env's catalog reads them."""
    primary = folder / "data" / "03_primary"
    primary.mkdir(parents=True, exist_ok=True)
    for split, source, rows in (
        ("train", "train.jsonl", slice(0, 60)),
        ("validation", "train.jsonl", slice(60, 80)),
        ("test", "test.jsonl", slice(0, 40)),
    ):
        raw = pd.read_json(DEMO_DATA / source, lines=True).iloc[rows]
        pd.DataFrame(
            {
                "row_id": range(len(raw)),
                "text": raw["review"].to_numpy(),
                "label": (raw["sentiment"] == "positive").astype("int64").to_numpy(),
            }
        ).to_parquet(primary / f"{split}_reviews.parquet")
    (primary / "label_names.json").write_text(json.dumps(LABEL_NAMES))


def credentials_environment(fake: FakeAzure) -> dict[str, str]:
    return {
        **fake.trusting_environment(),
        "AZURE_OPENAI_ENDPOINT": fake.url,
        "AZURE_OPENAI_API_KEY": API_KEY,
        "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
        "AZURE_RESOURCE_GROUP": "rg-llm",
        "AZURE_OPENAI_ACCOUNT": "aoai-llm",
        "AZURE_MANAGEMENT_TOKEN": ARM_TOKEN,
    }


@pytest.fixture
def fake_azure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    write_review_splits(tmp_path)
    with FakeAzure(api_key=API_KEY, management_token=ARM_TOKEN) as fake:
        for name, value in credentials_environment(fake).items():
            monkeypatch.setenv(name, value)
        yield fake


def run_azure(run_kedro: Callable[..., Any], fake: FakeAzure, **azure: Any) -> None:
    """Target B through Kedro in this process (``run_kedro``: tests/conftest.py)."""
    block = {"deployment": {"management_endpoint": fake.url}, **azure}
    try:
        run_kedro(
            env="test",
            pipeline_names=["deployment_azure_openai"],
            runtime_params={"deployment": {"azure_openai": block}},
        )
    finally:
        # kedro-mlflow leaves its run active after a session: a rerun in this process
        # would log changed parameters into it, which MLflow refuses.
        while mlflow.active_run() is not None:
            mlflow.end_run()


def read_json(folder: Path, relative: str) -> Any:
    return json.loads((folder / relative).read_text())


def fail_results_download(fake: FakeAzure) -> None:
    fake.fail_next("GET", r"^/openai/files/[^/]+/content$", 500, times=100)


def fail_deployment(fake: FakeAzure) -> None:
    fake.deployment_outcome = "Failed"


def fail_scoring(fake: FakeAzure) -> None:
    fake.fail_next("POST", r"/chat/completions$", 500, times=100)


def heal(fake: FakeAzure) -> None:
    fake._failures.clear()
    fake.deployment_outcome = "Succeeded"


@pytest.mark.parametrize(
    "case",
    [
        pytest.param((fail_results_download, True, 1), id="results-download"),
        # The failed deployment is deleted (cleanup.on_failure): deployed once more.
        pytest.param((fail_deployment, True, 2), id="deployment"),
        # Kept for the rerun (on_failure: false): the same deployment, no second PUT.
        pytest.param((fail_scoring, False, 1), id="scoring"),
    ],
)
def test_a_failure_after_the_job_succeeded_then_a_rerun_uses_the_same_job(
    run_kedro, fake_azure, tmp_path, caplog, case
):
    fault, on_failure, deployment_puts = case
    fault(fake_azure)
    cleanup = {"on_failure": on_failure}
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the fault raises
        run_azure(run_kedro, fake_azure, cleanup=cleanup)
    record = read_json(tmp_path, RECORD)
    assert record["job_id"] in fake_azure.jobs and record["origin"] == "created"
    assert fake_azure.jobs[record["job_id"]]["status"] == "succeeded"
    assert not (tmp_path / METRICS).exists()

    heal(fake_azure)
    with caplog.at_level(logging.INFO, logger="llm_finetuning"):
        run_azure(run_kedro, fake_azure, cleanup=cleanup)
    assert fake_azure.jobs_created == 1
    assert len(fake_azure.calls("POST", JOB_POSTS)) == 1
    assert fake_azure.uploads == 2  # train and validation, once each
    assert read_json(tmp_path, RECORD)["origin"] == "job record"
    assert f"Picking up fine-tuning job {record['job_id']}" in caplog.text
    job = read_json(tmp_path, "data/06_models/azure_openai/fine_tuning_job.json")
    assert job["job_id"] == record["job_id"] and job["status"] == "succeeded"
    assert read_json(tmp_path, METRICS)["n_examples"] == 12
    assert fake_azure.deployment_puts == deployment_puts
    assert not fake_azure.deployments  # deleted by the clean-up at the end


def test_a_failed_job_or_a_changed_request_starts_a_new_job(
    run_kedro, fake_azure, tmp_path, caplog
):
    fake_azure.job_outcome = "failed"
    with pytest.raises(Exception, match="invalid_training_file"):
        run_azure(run_kedro, fake_azure)
    failed = read_json(tmp_path, RECORD)["job_id"]

    fake_azure.job_outcome = "succeeded"
    with caplog.at_level(logging.INFO, logger="llm_finetuning"):
        run_azure(run_kedro, fake_azure)
    assert f"job {failed} of the job record failed: creating a new job" in caplog.text
    second = read_json(tmp_path, RECORD)
    assert second["job_id"] != failed and fake_azure.jobs_created == 2
    assert fake_azure.uploads == 2  # the same files, found by name and size

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="llm_finetuning"):
        run_azure(run_kedro, fake_azure, fine_tuning={"n_epochs": 3})
    assert "request changed" in caplog.text and "request.hyperparameters" in caplog.text
    assert fake_azure.jobs_created == 3

    run_azure(run_kedro, fake_azure, fine_tuning={"n_epochs": 3}, resume_job=False)
    assert fake_azure.jobs_created == 4  # forced


def test_posts_that_took_effect_but_answered_500_leave_one_file_each_and_one_job(
    run_kedro, fake_azure, tmp_path
):
    fake_azure.lose_answer("POST", r"^/openai/files$", 500)
    fake_azure.lose_answer("POST", JOB_POSTS, 500)
    fake_azure.lose_answer("PUT", r"/deployments/imdb-sentiment-ft$", 502)
    run_azure(run_kedro, fake_azure)
    fine_tune_files = [
        f for f in fake_azure.files.values() if f["purpose"] == "fine-tune"
    ]
    assert fake_azure.uploads == 2 and len(fine_tune_files) == 2
    assert sorted(f["filename"].split("-")[0] for f in fine_tune_files) == [
        "train",
        "validation",
    ]
    assert fake_azure.jobs_created == 1 and len(fake_azure.jobs) == 1
    assert len(fake_azure.calls("POST", JOB_POSTS)) == 1
    assert fake_azure.deployment_puts == 1
    assert read_json(tmp_path, METRICS)["n_examples"] == 12


# --- a real `kedro run`, killed from outside while it polls the job ------------------


def kedro_project(folder: Path, project_root: Path) -> None:
    """Make ``folder`` a Kedro project folder: the repository's ``[tool.kedro]`` and an
    empty ``src`` (Kedro requires it; the package comes from the editable install)."""
    text = (project_root / "pyproject.toml").read_text()
    section = text[text.index("[tool.kedro]") :]
    end = section.find("\n[", 1)
    (folder / "pyproject.toml").write_text(section if end < 0 else section[:end])
    (folder / "src").mkdir(exist_ok=True)


def start_kedro_run(
    folder: Path, project_root: Path, fake: FakeAzure, log: Path
) -> subprocess.Popen:
    """``kedro run`` of target B in its own process group, logging to ``log``."""
    params = f"deployment.azure_openai.deployment.management_endpoint={fake.url}"
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AZURE_", "KEDRO_", "MLFLOW_", "SSL_", "REQUESTS_"))
    }
    environment.update(
        credentials_environment(fake),
        KEDRO_DISABLE_TELEMETRY="1",
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="1",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        COLUMNS="200",
    )
    command = [
        *(sys.executable, "-m", "kedro", "run", "--env", "test"),
        *("--pipelines", "deployment_azure_openai"),
        *("--conf-source", str(project_root / "conf"), "--params", params),
    ]
    with log.open("w") as output:
        return subprocess.Popen(
            command,
            cwd=folder,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, ended as one below
        )


def end_process_group(process: subprocess.Popen) -> None:
    """SIGKILL the child's whole process group and reap the child."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)


def wait_for(
    condition: Callable[[], Any], process: subprocess.Popen, log: Path, what: str
) -> Any:
    """Poll ``condition`` until it is truthy; fail if the run ends or time runs out."""
    deadline = time.monotonic() + KEDRO_RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process.poll() is not None:
            pytest.fail(
                f"kedro run ended ({process.returncode}) before {what}:\n"
                + log.read_text()[-6000:]
            )
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}:\n" + log.read_text()[-6000:])


def recorded_and_polled_job(folder: Path, fake: FakeAzure) -> str | None:
    """The recorded job id once the fake has answered a GET of that job."""
    path = folder / RECORD
    if not path.is_file():
        return None
    job_id = json.loads(path.read_text()).get("job_id")
    polled = job_id and fake.calls("GET", rf"^/openai/fine_tuning/jobs/{job_id}$")
    return job_id if polled else None


@pytest.mark.slow
def test_a_kedro_run_killed_while_polling_then_rerun_uses_the_same_job(
    tmp_path, project_root
):
    write_review_splits(tmp_path)
    kedro_project(tmp_path, project_root)
    with FakeAzure(api_key=API_KEY, management_token=ARM_TOKEN) as fake:
        fake.job_outcome = "never"  # running until this test says otherwise
        first_log = tmp_path / "first_run.log"
        first = start_kedro_run(tmp_path, project_root, fake, first_log)
        try:
            job_id = wait_for(
                lambda: recorded_and_polled_job(tmp_path, fake),
                first,
                first_log,
                "the job record and a poll of the job",
            )
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
        finally:
            end_process_group(first)
        assert first.returncode == -signal.SIGKILL
        assert fake.jobs[job_id]["status"] == "running"
        assert fake.jobs_created == 1

        fake.job_outcome = "succeeded"
        second_log = tmp_path / "second_run.log"
        second = start_kedro_run(tmp_path, project_root, fake, second_log)
        try:
            second.wait(timeout=KEDRO_RUN_TIMEOUT_S)
        finally:
            end_process_group(second)
        output = second_log.read_text()
        assert second.returncode == 0, output[-6000:]
        assert f"Picking up fine-tuning job {job_id}" in output
        assert fake.jobs_created == 1 and len(fake.calls("POST", JOB_POSTS)) == 1
        assert fake.uploads == 2
        assert fake.jobs[job_id]["status"] == "succeeded"
        assert read_json(tmp_path, RECORD)["job_id"] == job_id
        assert read_json(tmp_path, METRICS)["n_examples"] == 12
        assert not fake.deployments  # cleaned up
