"""The project hooks: training ends when its model is saved; MLflow runs end honestly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import mlflow
import psutil
import pytest
from mlflow import MlflowClient

from llm_finetuning import hooks
from llm_finetuning.pipelines.training import checkpoints


@pytest.fixture
def tracking(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = mlflow.create_experiment("hooks")
    return MlflowClient(), experiment_id


def open_run(client: MlflowClient, experiment_id: str, identity: dict[str, str]):
    run = client.create_run(experiment_id, tags=identity)
    return run.info.run_id


def test_runs_of_dead_processes_of_this_host_are_marked_killed(tracking):
    client, experiment_id = tracking
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(gone.stdout)
    me = hooks.process_identity()
    dead = open_run(client, experiment_id, {**me, hooks.PID_TAG: str(dead_pid)})
    alive = open_run(client, experiment_id, me)
    # The pid is alive, but it is another process than the one that opened the run.
    recycled = open_run(
        client, experiment_id, {**me, hooks.STARTED_TAG: f"{psutil.boot_time():.3f}"}
    )
    elsewhere = open_run(
        client,
        experiment_id,
        {**me, hooks.PID_TAG: str(dead_pid), hooks.HOST_TAG: "another-host"},
    )
    untagged = client.create_run(experiment_id).info.run_id

    marked = hooks.mark_dead_runs_killed(experiment_id, exclude=alive)

    assert sorted(marked) == sorted([dead, recycled])
    status = {
        run_id: client.get_run(run_id).info.status
        for run_id in (dead, alive, recycled, elsewhere, untagged)
    }
    assert status == {
        dead: "KILLED",
        alive: "RUNNING",
        recycled: "KILLED",
        elsewhere: "RUNNING",
        untagged: "RUNNING",
    }


def test_sigterm_raises_in_the_pipeline_and_the_handler_is_restored():
    run_hooks = hooks.RunEndingHooks()
    previous = signal.getsignal(signal.SIGTERM)
    run_hooks.before_pipeline_run(run_params={})
    try:
        with pytest.raises(hooks.TerminatedError, match="stopped by SIGTERM"):
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0.5)  # the handler runs before this returns
    finally:
        run_hooks.on_pipeline_error(error=RuntimeError("other"))
    assert signal.getsignal(signal.SIGTERM) == previous


def test_a_terminated_pipeline_ends_its_run_as_killed(tracking):
    client, experiment_id = tracking
    run = mlflow.start_run(experiment_id=experiment_id)
    run_hooks = hooks.RunEndingHooks()
    run_hooks.before_pipeline_run(run_params={})
    run_hooks.before_node_run()
    run_hooks.on_pipeline_error(error=hooks.TerminatedError(signal.SIGTERM))
    assert mlflow.active_run() is None
    finished = client.get_run(run.info.run_id)
    assert finished.info.status == "KILLED"
    assert finished.data.tags[hooks.PID_TAG] == str(os.getpid())


def test_a_run_open_at_exit_is_killed_not_finished(tracking):
    client, experiment_id = tracking
    run = mlflow.start_run(experiment_id=experiment_id)
    run_hooks = hooks.RunEndingHooks()
    run_hooks.before_node_run()
    run_hooks._end_open_run_as_killed()  # what atexit calls after a Ctrl-C
    assert client.get_run(run.info.run_id).info.status == "KILLED"


def test_only_the_saved_models_own_unfinished_run_is_finished(tmp_path):
    folder = tmp_path / "checkpoints"
    checkpoints.prepare(folder, "run-a", None)
    (folder / "checkpoint-4").mkdir()
    metadata = {
        "run_fingerprint": "run-b",
        "checkpoints": {"dir": str(folder), "keep_after_success": False},
    }
    assert checkpoints.finish_saved_model(metadata) is None  # another run's folder
    assert (folder / "checkpoint-4").is_dir()
    assert checkpoints.finish_saved_model({"run_fingerprint": "run-a"}) is None
    metadata["run_fingerprint"] = "run-a"
    assert checkpoints.finish_saved_model(metadata) == folder
    assert not (folder / "checkpoint-4").exists()
