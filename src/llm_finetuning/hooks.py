"""Project hooks: what must happen around a run whatever way it ends.

- :class:`CheckpointHooks` ends a training run once its model is saved, not before, so
  a kill during the save resumes from the checkpoints instead of training again.
- :class:`RunSummaryHooks` logs what a run made, where, how good and what to run next
  (:mod:`llm_finetuning.summary`), also when it fails.
- :class:`RunEndingHooks` makes MLflow runs end honestly: SIGTERM stops the pipeline as
  an error (kedro-mlflow's and this hook's error handlers run, finally blocks stop the
  processes the nodes started) and the run is marked ``KILLED``; a run still open when
  the interpreter exits on another path (Ctrl-C) is marked ``KILLED`` too, instead of
  MLflow's exit handler calling it ``FINISHED``; and runs left ``RUNNING`` by a
  process that was SIGKILLed are found and marked ``KILLED`` by the next run.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import sys
import threading
from types import FrameType
from typing import Any

from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)

PID_TAG = "llm_finetuning.pid"
HOST_TAG = "llm_finetuning.host"
STARTED_TAG = "llm_finetuning.process_started"
STOP_SIGNALS = (signal.SIGTERM,)


class TerminatedError(Exception):
    """The process got a stop signal; raised where it was running at that moment.

    An ``Exception`` (not ``BaseException``) so that Kedro calls the
    ``on_pipeline_error`` hooks with it.
    """

    def __init__(self, signal_number: int) -> None:
        self.signal_number = signal_number
        super().__init__(
            f"stopped by {signal.Signals(signal_number).name}: the pipeline was "
            "interrupted; rerun the same command to continue from what was saved"
        )


class CheckpointHooks:
    """Finish a training run (and drop its checkpoints) once its model is saved."""

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        # Looked up, not imported: importing transformers here would slow every CLI
        # command, and nothing can be a TextClassifier before its module is loaded.
        model_folder = sys.modules.get("llm_finetuning.datasets.model_folder")
        if model_folder is not None and isinstance(data, model_folder.TextClassifier):
            from llm_finetuning.pipelines.training import checkpoints

            checkpoints.finish_saved_model(data.metadata)


class RunSummaryHooks:
    """Plain logs when piped; the run summary at the end of a run, and on failure."""

    @hook_impl
    def after_context_created(self) -> None:
        from llm_finetuning.console import plain_console_when_piped

        plain_console_when_piped()

    def __init__(self) -> None:
        self._catalog: Any = None
        self._saved: dict[str, str | None] = {}
        self._records: dict[str, Any] = {}

    @hook_impl
    def before_pipeline_run(self, catalog: Any) -> None:
        self._catalog = catalog
        self._saved = {}
        self._records = {}

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any) -> None:
        from llm_finetuning.summary import dataset_location

        dataset = None
        if self._catalog is not None:
            try:
                dataset = self._catalog.get(dataset_name)
            except Exception:
                dataset = None
        self._saved[dataset_name] = dataset_location(dataset) if dataset else None
        if dataset_name in ("evaluation_metrics", "baseline_comparison_table"):
            self._records[dataset_name] = data

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any]) -> None:
        self._log(run_params, None)

    @hook_impl
    def on_pipeline_error(self, error: Exception, run_params: dict[str, Any]) -> None:
        self._log(run_params, error)

    def _log(self, run_params: dict[str, Any], error: Exception | None) -> None:
        from llm_finetuning.summary import summary_lines

        try:
            lines = summary_lines(
                pipelines=list(run_params.get("pipeline_names") or []),
                env=run_params.get("env"),
                saved=self._saved,
                evaluation_metrics=self._records.get("evaluation_metrics"),
                baselines_table=self._records.get("baseline_comparison_table"),
                mlflow_run=_mlflow_run_facts(),
                error=error,
            )
        except Exception as failure:  # a summary must never fail a run
            logger.warning("Could not write the run summary: %s", failure)
            return
        logger.info("\n".join(lines))


def _mlflow_run_facts() -> dict[str, str] | None:
    """The experiment, id and tracking URI of the run kedro-mlflow opened, if any."""
    mlflow = sys.modules.get("mlflow")
    run = mlflow.active_run() if mlflow is not None else None
    if run is None:
        run = mlflow.last_active_run() if mlflow is not None else None
    if run is None:
        return None
    experiment = mlflow.get_experiment(run.info.experiment_id)
    return {
        "experiment": experiment.name if experiment else run.info.experiment_id,
        "run_id": run.info.run_id,
        "tracking_uri": mlflow.get_tracking_uri(),
    }


class RunEndingHooks:
    """MLflow runs end as what happened to them (see the module docstring)."""

    def __init__(self) -> None:
        self._previous_handlers: dict[int, Any] = {}
        self._run_id: str | None = None
        self._tagged = False

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        self._install_signal_handlers()
        atexit.register(self._end_open_run_as_killed)

    @hook_impl
    def before_node_run(self) -> None:
        # kedro-mlflow has opened the run by the first node.
        if not self._tagged:
            self._tagged = True
            self._tag_and_sweep()

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._restore_signal_handlers()
        self._run_id = None

    # After kedro-mlflow's own handler, which ends the run as FAILED (and fails itself
    # if the run was already ended): a terminated run is then re-marked KILLED.
    @hook_impl(trylast=True)
    def on_pipeline_error(self, error: Exception) -> None:
        self._restore_signal_handlers()
        if isinstance(error, TerminatedError):
            logger.error("%s", error)
            self._end_active_run("KILLED")
            self._mark_killed(self._run_id)
        self._run_id = None

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for number in STOP_SIGNALS:
            self._previous_handlers[number] = signal.signal(number, _raise_terminated)

    def _restore_signal_handlers(self) -> None:
        for number, handler in self._previous_handlers.items():
            signal.signal(number, handler)
        self._previous_handlers.clear()

    def _tag_and_sweep(self) -> None:
        import mlflow

        run = mlflow.active_run()
        if run is None:
            return
        self._run_id = run.info.run_id
        identity = process_identity()
        try:
            mlflow.set_tags(identity)
            mark_dead_runs_killed(run.info.experiment_id, exclude=run.info.run_id)
        except Exception as error:  # tracking must never stop a pipeline
            logger.warning("Could not check for runs of killed processes: %s", error)

    def _end_open_run_as_killed(self) -> None:
        if self._run_id is None:
            return
        import mlflow

        run = mlflow.active_run()
        if run is not None and run.info.run_id == self._run_id:
            logger.warning(
                "MLflow run %s ended as KILLED: the process exits before the pipeline "
                "finished",
                self._run_id,
            )
            self._end_active_run("KILLED")

    def _mark_killed(self, run_id: str | None) -> None:
        if run_id is None:
            return
        from mlflow import MlflowClient

        try:
            MlflowClient().set_terminated(run_id, "KILLED")
        except Exception as error:
            logger.warning("Could not mark MLflow run %s KILLED: %s", run_id, error)

    def _end_active_run(self, status: str) -> None:
        import mlflow

        try:
            while mlflow.active_run() is not None:
                mlflow.end_run(status)
        except Exception as error:
            logger.warning("Could not end the MLflow run: %s", error)


def _raise_terminated(signal_number: int, frame: FrameType | None) -> None:
    raise TerminatedError(signal_number)


def process_identity() -> dict[str, str]:
    """Tags that let a later run tell whether this process is still alive."""
    import psutil

    return {
        PID_TAG: str(os.getpid()),
        HOST_TAG: socket.gethostname(),
        STARTED_TAG: f"{psutil.Process().create_time():.3f}",
    }


def _process_is_alive(pid: int, started: float) -> bool:
    import psutil

    try:
        # A recycled pid belongs to a process started later.
        return abs(psutil.Process(pid).create_time() - started) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def mark_dead_runs_killed(
    experiment_id: str, *, exclude: str | None = None
) -> list[str]:
    """Mark ``RUNNING`` runs of this host whose process is gone as ``KILLED``.

    Only runs tagged by :func:`process_identity` on this host are judged: a run of
    another machine (a Databricks job) may well be alive. Returns the run ids marked.
    """
    from mlflow import MlflowClient

    client = MlflowClient()
    host = socket.gethostname()
    running = client.search_runs(
        [experiment_id],
        filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'",
    )
    marked = []
    for run in running:
        tags = run.data.tags
        if run.info.run_id == exclude or PID_TAG not in tags:
            continue
        pid, started = int(tags[PID_TAG]), float(tags.get(STARTED_TAG, 0))
        if _process_is_alive(pid, started):
            continue
        client.set_terminated(run.info.run_id, "KILLED")
        marked.append(run.info.run_id)
        logger.warning(
            "Marked MLflow run %s (%s) KILLED: it was left RUNNING by process %d, "
            "which is gone",
            run.info.run_id,
            run.info.run_name,
            pid,
        )
    return marked
