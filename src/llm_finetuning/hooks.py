"""Project hooks: what must happen around a run whatever way it ends.

- :class:`CheckpointHooks` ends a training run once its model is saved, not before, so
  a kill during the save resumes from the checkpoints instead of training again.
- :class:`RunSummaryHooks` logs what a run made, where, how good and what to run next
  (:mod:`llm_finetuning.summary`), also when it fails.
- :class:`LineageHooks` ties separate runs together (:mod:`llm_finetuning.lineage`):
  each MLflow run is tagged with the data and model fingerprints and the training run
  of its model, the training run links to the runs that used its model, and the
  outputs of an earlier model or data are found stale.
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
# The catalog entry of the lineage manifest (conf/base/catalog_lineage.yml).
MANIFEST_DATASET = "lineage_manifest"


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
    """Rich logs on a terminal, plain when piped; the run summary at the end of a run
    and on failure.

    Given the :class:`LineageHooks` instance, the summary also says the run's lineage
    and which outputs on disk are stale.
    """

    @hook_impl
    def after_context_created(self) -> None:
        from llm_finetuning.console import (
            plain_console_when_piped,
            rich_console_on_terminal,
        )

        rich_console_on_terminal()
        plain_console_when_piped()

    def __init__(self, lineage: LineageHooks | None = None) -> None:
        self._lineage = lineage
        self._catalog: Any = None
        self._saved: dict[str, str | None] = {}
        self._records: dict[str, Any] = {}

    @hook_impl
    def before_pipeline_run(self, catalog: Any) -> None:
        from llm_finetuning.console import route_transformers_logs

        route_transformers_logs()
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
                lineage=self._lineage.record if self._lineage else None,
                stale=self._lineage.stale if self._lineage else (),
            )
        except Exception as failure:  # a summary must never fail a run
            logger.warning("Could not write the run summary: %s", failure)
            return
        logger.info("\n".join(lines))


class LineageHooks:
    """The data and model every output of a run came from (:mod:`llm_finetuning.lineage`).

    During the run it notes the tokenized splits saved or loaded (the data
    fingerprint), the model loaded or saved (its folder's ``lineage`` metadata) and
    every output written; it stamps a model about to be saved with this run's id and
    data fingerprint. At the end, before kedro-mlflow closes the run (``tryfirst``), it:

    - tags the run ``lineage.data_fingerprint``, ``lineage.model_fingerprint``,
      ``lineage.training_run_id``;
    - when the model came from another run, tags that training run
      ``lineage.used_by.<run id>`` and, for an evaluation, copies the run's
      ``evaluation.*`` metrics into it and tags ``lineage.evaluation_run_id``: the
      training run is where an MLflow user compares models. (``mlflow.parentRunId``
      would show a later evaluation as a child run of the training, which it is not.)
    - records the outputs in the ``lineage_manifest``: outputs downstream of the model
      (in the pipeline's graph) with the model's fingerprint, the others (baselines,
      data) with the data's only; and lists the recorded outputs of an earlier model
      or data as :attr:`stale`, for the run summary.

    Nothing here may fail a run: a lineage that cannot be recorded is a warning.
    """

    def __init__(self) -> None:
        self._reset(None, None, [])

    def _reset(self, catalog: Any, pipeline: Any, pipelines: list[str]) -> None:
        self._catalog = catalog
        self._pipeline = pipeline
        self._pipelines = pipelines
        self._run_id: str | None = None
        self._data_fingerprint: str | None = None  # of the tokenized splits seen
        self._inherited_data: str | None = None  # recorded for the inputs loaded
        self._model: dict[str, Any] = {}  # lineage of the model loaded or saved
        self._model_datasets: set[str] = set()
        self._saved_model = False
        self._written: dict[str, str] = {}  # dataset name -> location
        self._recorded: dict[str, Any] | None = None  # the manifest, read once
        self.record: Any = None  # this run's lineage.Lineage, once it ended
        self.stale: list[str] = []

    @hook_impl
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Any, catalog: Any
    ) -> None:
        names = list(run_params.get("pipeline_names") or ["__default__"])
        self._reset(catalog, pipeline, names)
        self._run_id = _active_run_id()  # kedro-mlflow's hook has opened it

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any) -> None:
        try:
            self._observe(dataset_name, data)
            if self._inherited_data is None:
                entry = self._manifest_entry(dataset_name)
                self._inherited_data = entry.get("data_fingerprint")
        except Exception as error:
            logger.warning("Lineage of '%s' not recorded: %s", dataset_name, error)

    @hook_impl
    def before_dataset_saved(self, dataset_name: str, data: Any) -> None:
        if not _is_classifier(data):
            return
        from llm_finetuning.lineage import METADATA_KEY

        try:
            # The folder's save adds the weights' fingerprint (TextClassifierDataset).
            data.metadata[METADATA_KEY] = {
                "training_run_id": _active_run_id() or self._run_id,
                "data_fingerprint": self._current_data(),
            }
        except Exception as error:
            logger.warning("Lineage of '%s' not recorded: %s", dataset_name, error)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any) -> None:
        try:
            location = _location(self._catalog, dataset_name)
            if location and dataset_name != MANIFEST_DATASET:
                self._written[dataset_name] = location
            self._observe(dataset_name, data, saved=True)
        except Exception as error:
            logger.warning("Lineage of '%s' not recorded: %s", dataset_name, error)

    @hook_impl(tryfirst=True)
    def after_pipeline_run(self) -> None:
        self._conclude()

    @hook_impl(tryfirst=True)
    def on_pipeline_error(self) -> None:
        self._conclude()  # what was written before the failure is on disk too

    def _observe(self, dataset_name: str, data: Any, saved: bool = False) -> None:
        from llm_finetuning.lineage import METADATA_KEY, data_fingerprint

        if _is_classifier(data):
            self._model = dict(data.metadata.get(METADATA_KEY) or {})
            self._model_datasets.add(dataset_name)
            self._saved_model = saved
        elif _is_tokenized_splits(data):
            self._data_fingerprint = data_fingerprint(data)

    def _current_data(self) -> str | None:
        """The run's data: its tokenized splits, else its inputs', else its model's."""
        return (
            self._data_fingerprint
            or self._inherited_data
            or self._model.get("data_fingerprint")
        )

    def _manifest_entry(self, dataset_name: str) -> dict[str, Any]:
        from llm_finetuning.lineage import read_manifest

        if self._recorded is None:
            manifest = _location(self._catalog, MANIFEST_DATASET)
            self._recorded = read_manifest(manifest) if manifest else {}
        location = _location(self._catalog, dataset_name)
        return self._recorded.get(location, {}) if location else {}

    def _conclude(self) -> None:
        from llm_finetuning.lineage import Lineage

        try:
            run_id = _active_run_id() or self._run_id
            self.record = Lineage(
                data_fingerprint=self._current_data(),
                model_fingerprint=self._model.get("model_fingerprint"),
                training_run_id=self._model.get("training_run_id"),
                produced_by_run_id=run_id,
                pipelines=self._pipelines,
            )
            self._warn_if_model_data_differs()
            if run_id:
                self._tag_runs(run_id)
            self._update_manifest()
        except Exception as error:
            logger.warning("Could not record the run's lineage: %s", error)

    def _warn_if_model_data_differs(self) -> None:
        trained_on = self._model.get("data_fingerprint")
        current = self.record.data_fingerprint
        if not self._saved_model and trained_on and current and trained_on != current:
            logger.warning(
                "The model was trained on other data (fingerprint %s) than this run "
                "used (%s): rerun the training pipeline for a model of this data",
                trained_on,
                current,
            )

    def _tag_runs(self, run_id: str) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Metric

        from llm_finetuning.lineage import (
            COPIED_METRIC_PREFIX,
            EVALUATION_RUN_TAG,
            USED_BY_TAG,
        )

        client = MlflowClient()
        for key, value in self.record.tags().items():
            client.set_tag(run_id, key, value)
        training_run_id = self.record.training_run_id
        if not training_run_id or training_run_id == run_id:
            return
        # A run that has ended still takes tags and metrics.
        client.set_tag(training_run_id, USED_BY_TAG + run_id, ",".join(self._pipelines))
        run = client.get_run(run_id)
        copied = [
            Metric(key, value, run.info.start_time or 0, 0)
            for key, value in run.data.metrics.items()
            if key.startswith(COPIED_METRIC_PREFIX)
        ]
        if copied:
            client.log_batch(training_run_id, metrics=copied)
            client.set_tag(training_run_id, EVALUATION_RUN_TAG, run_id)

    def _model_dependent(self) -> set[str] | None:
        """Outputs made by the nodes that load or save the model, or downstream of them.

        None (all of them) when the pipeline is unknown.
        """
        if self._pipeline is None:
            return None
        seeds = [
            node.name
            for node in self._pipeline.nodes
            if self._model_datasets & {*node.inputs, *node.outputs}
        ]
        return set(self._pipeline.from_nodes(*seeds).all_outputs()) if seeds else set()

    def _update_manifest(self) -> None:
        from llm_finetuning.lineage import (
            read_manifest,
            record_outputs,
            stale_outputs,
            write_manifest,
        )

        path = _location(self._catalog, MANIFEST_DATASET)
        if not path:
            return  # no manifest in this environment's catalog
        dependent = self._model_dependent()
        data_only = self.record.without_model()
        written = {
            location: (
                self.record if dependent is None or name in dependent else data_only
            )
            for name, location in self._written.items()
        }
        outputs = record_outputs(read_manifest(path), written)
        self.stale = stale_outputs(outputs, self.record, written)
        if written:
            write_manifest(path, outputs)
        if self.stale:
            logger.warning(
                "%d output(s) on disk come from an earlier model or data (listed in "
                "the run summary and in %s)",
                len(self.stale),
                path,
            )


def _is_classifier(data: Any) -> bool:
    # Looked up, not imported: nothing is a TextClassifier before its module loads.
    module = sys.modules.get("llm_finetuning.datasets.model_folder")
    return module is not None and isinstance(data, module.TextClassifier)


def _is_tokenized_splits(data: Any) -> bool:
    datasets = sys.modules.get("datasets")
    dataset_dict = getattr(datasets, "DatasetDict", None)
    return (
        dataset_dict is not None
        and isinstance(data, dataset_dict)
        and any("input_ids" in split.column_names for split in data.values())
    )


def _location(catalog: Any, dataset_name: str) -> str | None:
    """Where a catalog dataset writes (relative to the project), if it says."""
    from llm_finetuning.summary import dataset_location

    if catalog is None:
        return None
    try:
        dataset = catalog.get(dataset_name)
    except Exception:
        return None
    return dataset_location(dataset) if dataset is not None else None


def _active_run_id() -> str | None:
    mlflow = sys.modules.get("mlflow")
    run = mlflow.active_run() if mlflow is not None else None
    return run.info.run_id if run is not None else None


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
