"""``kedro run --pipelines training`` killed from outside, then run again.

Test env data: 64 training reviews in batches of 8 make 8 steps an epoch; 24 steps
are 3 epochs, checkpoints every 4 steps, validation every 8. What is asserted is what
a user sees after the same command a second time: it resumed, the model folder is
complete, nothing half-written is left, the weights are the uninterrupted run's, and
MLflow says which runs were killed.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from safetensors.torch import load_file

from tests.kedro_process import (
    kill_group,
    make_project,
    run_kedro,
    start_kedro,
    wait_until_stopped,
)

pytestmark = pytest.mark.slow

STEPS = 24
PARAMS = (
    f"training.max_steps={STEPS},training.checkpoints.every_n_steps=4,"
    "training.evaluation.steps=8"
)
TRAIN = ("run", "--env", "test", "--pipelines", "training", "--params", PARAMS)
MODEL = Path("data/06_models/fine_tuned_model")
CHECKPOINTS = Path("data/06_models/checkpoints")
MODEL_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "llm_finetuning.json",
)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with the test env's data processed and one uninterrupted training."""
    project = make_project(tmp_path_factory.mktemp("kills"))
    run_kedro(project, "run", "--env", "test", "--pipelines", "data_processing")
    run_kedro(project, *TRAIN, log_name="uninterrupted")
    return project


def weights(project: Path) -> dict[str, torch.Tensor]:
    return load_file(project / MODEL / "model.safetensors")


def training_metrics(project: Path) -> dict:
    return json.loads((project / "data/08_reporting/training_metrics.json").read_text())


def run_statuses(project: Path) -> list[str]:
    """Statuses of the project's MLflow runs, oldest first."""
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("llm_finetuning")
    runs = client.search_runs([experiment.experiment_id], order_by=["start_time ASC"])
    return [run.info.status for run in runs]


def assert_complete_model(project: Path) -> None:
    for name in MODEL_FILES:
        assert (project / MODEL / name).is_file(), name
    leftovers = list((project / MODEL.parent).glob(".fine_tuned_model.*"))
    assert not leftovers, f"scratch folders left: {leftovers}"


def kill_at(project: Path, stop: tuple[str, str], log_name: str) -> None:
    with start_kedro(project, *TRAIN, stop=stop, log_name=log_name) as process:
        wait_until_stopped(process, project, log_name)
        kill_group(process, signal.SIGKILL)


def test_killed_in_a_later_epoch_resumes_and_ends_with_the_same_weights(project):
    reference = weights(project)
    assert training_metrics(project)["resumed_from_step"] is None

    # Checkpoint 12 is in the middle of the second epoch.
    kill_at(project, ("--stop-after-checkpoint", "12"), "killed_in_epoch_2")
    assert (project / CHECKPOINTS / "checkpoint-12" / "trainer_state.json").is_file()
    run = json.loads((project / CHECKPOINTS / "run.json").read_text())
    assert run["finished"] is False

    log = run_kedro(project, *TRAIN, log_name="resumed_from_epoch_2")
    metrics = training_metrics(project)
    assert metrics["resumed_from_step"] == 12
    assert metrics["throughput"]["samples"] == (STEPS - 12) * 8  # only steps 13-24
    assert_complete_model(project)
    assert not list((project / CHECKPOINTS).glob("checkpoint-*"))
    resumed = weights(project)
    # Measured here: bit-identical on CPU (largest difference 0.0).
    for name, weight in reference.items():
        assert torch.allclose(weight, resumed[name], atol=1e-6, rtol=0), name
    assert run_statuses(project)[-2:] == ["KILLED", "FINISHED"], log[-3000:]
    # Piped, the log is plain: one unwrapped line per message, and a run summary.
    assert "KILLED: it was left RUNNING by process" in log
    assert "Run summary: pipelines training, env test" in log
    assert "  fine_tuned_model: data/06_models/fine_tuned_model" in log
    assert "Next: kedro run --pipelines evaluation" in log


def test_killed_while_the_model_is_saved_keeps_the_checkpoints(project):
    before = weights(project)
    kill_at(project, ("--stop-while-saving", "fine_tuned_model"), "killed_saving")

    # The old model is intact, the new one half-written beside it, the run unfinished.
    assert torch.equal(
        next(iter(before.values())), next(iter(weights(project).values()))
    )
    scratch = list((project / MODEL.parent).glob(".fine_tuned_model.tmp-*"))
    assert len(scratch) == 1
    assert not (scratch[0] / "llm_finetuning.json").exists()
    assert (project / CHECKPOINTS / f"checkpoint-{STEPS}").is_dir()

    run_kedro(project, *TRAIN, log_name="after_killed_save")
    metrics = training_metrics(project)
    assert metrics["resumed_from_step"] == STEPS  # no training step repeated
    assert metrics["throughput"]["samples"] == 0
    assert_complete_model(project)
    assert run_statuses(project)[-2:] == ["KILLED", "FINISHED"]


def test_sigterm_ends_the_mlflow_run_as_killed(project):
    with start_kedro(
        project,
        *TRAIN,
        stop=("--stop-after-checkpoint", "8"),
        log_name="terminated",
    ) as process:
        wait_until_stopped(process, project, "terminated")
        process.send_signal(signal.SIGTERM)
        process.send_signal(signal.SIGCONT)  # a stopped process handles it on waking
        code = process.wait(timeout=120)
    log = (project / "terminated.log").read_text()
    assert code != 0
    assert "stopped by SIGTERM" in log
    assert run_statuses(project)[-1] == "KILLED"
    # Its checkpoints are still there for the next run.
    assert (project / CHECKPOINTS / "checkpoint-8" / "trainer_state.json").is_file()
