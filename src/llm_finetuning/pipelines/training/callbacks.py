"""Trainer callbacks: periodic checkpoints beside best-model saving, MLflow metrics.

The Trainer's own MLflow integration is left off (``report_to="none"``): it would open
and close runs of its own next to kedro-mlflow's and has failed on long parameter
values (transformers #9210). Parameters are logged by kedro-mlflow's hook (flattened,
long values truncated, see ``conf/base/mlflow.yml``); :class:`MlflowMetricsCallback`
logs the Trainer's step metrics into the run kedro-mlflow opened.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping
from typing import Any

from transformers import TrainerCallback

logger = logging.getLogger(__name__)

# Older MLflow servers (and kedro-mlflow's documentation) cap parameter values at 250
# characters; the facts logged here are short, the cap only guards against surprises.
_MAX_PARAM_LENGTH = 250


class PeriodicCheckpointCallback(TrainerCallback):
    """Checkpoint every ``every_n_steps`` optimizer steps.

    With best-model selection the Trainer saves only on evaluations that improve the
    metric (``save_strategy="best"``): it requires its save and evaluation schedules
    to match otherwise. This adds the periodic saves that resuming needs, so a run
    evaluated once per epoch still checkpoints every N steps. An evaluation that does
    not improve vetoes a save due at its step; the save then happens one step later.
    """

    def __init__(self, every_n_steps: int) -> None:
        self.every_n_steps = every_n_steps
        self._due = False

    def on_step_end(self, args, state, control, **kwargs):
        # The last step too: a kill while the model is saved then repeats no training.
        if (
            state.global_step % self.every_n_steps == 0
            or state.global_step >= state.max_steps
        ):
            self._due = True
        if self._due:
            control.should_save = True
        return control

    def on_save(self, args, state, control, **kwargs):
        self._due = False


class MlflowMetricsCallback(TrainerCallback):
    """Logs every Trainer log entry (loss, learning rate, eval metrics) to MLflow.

    Metrics go to the active run (the one kedro-mlflow opened for ``kedro run``) or,
    inside a torch.distributed worker started without one, to the run named by
    ``MLFLOW_RUN_ID``; without either nothing is logged. Only the main process logs.
    On resume, the history restored from the checkpoint is logged too, so the new run
    shows the whole curve. A tracking failure is a warning, never a failed training.
    """

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        self.params = dict(params or {})
        self._run_id: str | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self._run_id = active_run_id()
        if self._run_id is None:
            return
        params = {
            key: str(value)[:_MAX_PARAM_LENGTH] for key, value in self.params.items()
        }
        self._log(params=params)
        for entry in state.log_history:  # restored from a checkpoint when resuming
            self._log_metrics(entry, entry.get("step", 0))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self._run_id is not None and state.is_world_process_zero and logs:
            self._log_metrics(logs, state.global_step)

    def _log_metrics(self, logs: Mapping[str, Any], step: int) -> None:
        numeric = {
            key: float(value)
            for key, value in logs.items()
            if isinstance(value, int | float) and math.isfinite(value) and key != "step"
        }
        self._log(metrics=numeric, step=step)

    def _log(
        self,
        *,
        metrics: Mapping[str, float] | None = None,
        params: Mapping[str, str] | None = None,
        step: int = 0,
    ) -> None:
        log_to_run(self._run_id, metrics=metrics, params=params, step=step)


def active_run_id() -> str | None:
    """The active MLflow run's id, else ``MLFLOW_RUN_ID``, else ``None``."""
    import mlflow

    run = mlflow.active_run()
    return run.info.run_id if run is not None else os.environ.get("MLFLOW_RUN_ID")


def log_to_run(
    run_id: str | None,
    *,
    metrics: Mapping[str, float] | None = None,
    params: Mapping[str, str] | None = None,
    step: int = 0,
) -> None:
    """Log metrics and params to ``run_id`` in one batch; warn instead of failing."""
    if run_id is None or not (metrics or params):
        return
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    timestamp = int(time.time() * 1000)
    try:
        MlflowClient().log_batch(
            run_id,
            metrics=[
                Metric(key, value, timestamp, step)
                for key, value in (metrics or {}).items()
            ],
            params=[Param(key, value) for key, value in (params or {}).items()],
        )
    except Exception as error:  # tracking must never stop a training run
        logger.warning("Could not log to MLflow run %s: %s", run_id, error)
