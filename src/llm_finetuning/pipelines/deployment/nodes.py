"""Nodes of the ``deployment`` pipeline: two targets, each ending in a smoke test, a
score by the evaluation pipeline's metrics and a clean-up.

* ``mlflow``: register the fine-tuned model as an MLflow pyfunc model, serve it on
  127.0.0.1, check served == offline predictions, measure latency, stop the server.
* ``azure_openai``: export and validate chat-format JSONL, fine-tune a hosted model
  through Azure OpenAI, deploy it through Azure Resource Manager, score it, delete the
  deployment. A dry run stops after the files and the job request.

``deployment.targets`` picks the targets. Kedro builds pipelines without parameters, so
the nodes of a target that is not picked run but do nothing: they return a record
``{"not_run": <reason>}`` (an empty frame for predictions) that the next nodes pass on.
Each target's nodes are also tagged (``mlflow_serving``, ``azure_openai``), so
``kedro run --pipeline deployment --tags azure_openai`` runs one target alone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import mlflow
import pandas as pd
from sklearn.model_selection import train_test_split

from llm_finetuning.azure_openai import (
    INVALID_LABEL,
    JOB_FAILED_STATUSES,
    AzureCredentials,
    AzureOpenAIService,
    AzureOpenAISettings,
    FineTuningJobFailed,
    chat_examples,
    fine_tuning_job_request,
    identity_changes,
    job_identity,
    parse_label_word,
    to_jsonl,
    upload_filename,
    validate_chat_jsonl,
)
from llm_finetuning.datasets import TextClassifier
from llm_finetuning.metrics import (
    LABEL,
    PREDICTED_LABEL,
    ROW_ID,
    flatten_metrics,
    predictions_frame,
    probability_columns,
)
from llm_finetuning.pipelines.evaluation.nodes import score_classifier
from llm_finetuning.serving import (
    MlflowTargetSettings,
    log_and_register,
    port_is_open,
    smoke_test_server,
)

logger = logging.getLogger(__name__)

MLFLOW = "mlflow"
AZURE_OPENAI = "azure_openai"
TARGETS = (MLFLOW, AZURE_OPENAI)
# Not "skipped": score_predictions reports use that key for metrics it left out.
SKIPPED = "not_run"
INPUT_EXAMPLE_CHARS = 300


def check_targets(targets: Sequence[str]) -> list[str]:
    """The deployment targets, rejecting unknown names."""
    targets = [targets] if isinstance(targets, str) else list(targets or [])
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise ValueError(
            f"Unknown deployment target(s) {unknown} in deployment.targets; "
            f"choose from {list(TARGETS)}"
        )
    return targets


def _skipped(reason: str) -> dict[str, Any]:
    return {SKIPPED: reason}


def _not_picked(target: str) -> dict[str, Any]:
    return _skipped(f"'{target}' is not in deployment.targets")


def is_skipped(record: Any) -> bool:
    """Whether an upstream node of this target did nothing (see the module docstring)."""
    return isinstance(record, dict) and SKIPPED in record


def sample_reviews(reviews: pd.DataFrame, size: int | None, seed: int) -> pd.DataFrame:
    """At most ``size`` reviews, stratified by label and seeded, sorted by ``row_id``."""
    missing = {ROW_ID, "text", LABEL} - set(reviews.columns)
    if missing:
        raise ValueError(
            f"reviews lack column(s) {sorted(missing)}: {list(reviews.columns)}"
        )
    if size is None or size >= len(reviews):
        sample = reviews
    else:
        counts = reviews[LABEL].value_counts()
        stratify = reviews[LABEL] if counts.min() >= 2 and size >= len(counts) else None
        sample, _ = train_test_split(
            reviews, train_size=size, stratify=stratify, random_state=seed
        )
    return sample.sort_values(ROW_ID).reset_index(drop=True)


def _empty_predictions(
    label_names: Sequence[str], extra: Sequence[str] = ()
) -> pd.DataFrame:
    """A predictions frame without rows, for a target that did not run."""
    frame = pd.DataFrame(
        {c: pd.Series(dtype="int64") for c in (ROW_ID, LABEL, PREDICTED_LABEL)}
    )
    for column in extra:
        frame[column] = pd.Series(dtype="object")
    return frame


# --- target A: MLflow model -----------------------------------------------------------


def register_mlflow_model(
    fine_tuned_model: TextClassifier,
    test_reviews: pd.DataFrame,
    targets: list[str],
    mlflow_params: dict[str, Any],
) -> dict[str, Any]:
    """Log the fine-tuned model as an MLflow pyfunc model and register it.

    Returns:
        ``registered_model_name``, ``version``, ``model_uri`` (``models:/name/version``),
        ``run_id``, ``pip_requirements``, ...: what :mod:`llm_finetuning.serving` logged.
    """
    if MLFLOW not in check_targets(targets):
        return _not_picked(MLFLOW)
    settings = MlflowTargetSettings.from_params(mlflow_params)
    examples = [text[:INPUT_EXAMPLE_CHARS] for text in test_reviews["text"].head(2)]
    return log_and_register(fine_tuned_model, settings, examples)


def serve_mlflow_model(
    mlflow_model: dict[str, Any],
    test_reviews: pd.DataFrame,
    label_names: list[str],
    mlflow_params: dict[str, Any],
    seed: int,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Serve the registered model on 127.0.0.1 and send it the test reviews.

    The server is stopped before the node returns, also when a check fails.

    Returns:
        The served predictions (``test_predictions`` schema, the sampled rows) and the
        serving report (startup time, malformed requests, latency p50/p95, throughput).
    """
    if is_skipped(mlflow_model):
        return _empty_predictions(label_names), mlflow_model
    settings = MlflowTargetSettings.from_params(mlflow_params)
    sample = sample_reviews(test_reviews, settings.sample_size, seed)
    served, report = smoke_test_server(
        mlflow_model["model_uri"],
        sample["text"].tolist(),
        settings,
        tracking_uri=mlflow_model["tracking_uri"],
        registry_uri=mlflow_model.get("registry_uri"),
    )
    missing = {PREDICTED_LABEL, "label_name", *probability_columns(label_names)} - set(
        served.columns
    )
    if missing:
        raise ValueError(
            f"The served model answered without column(s) {sorted(missing)}; it "
            f"answered {list(served.columns)}"
        )
    mismatched = served["label_name"] != [
        label_names[i] for i in served[PREDICTED_LABEL]
    ]
    if mismatched.any():
        raise ValueError(
            f"The served label names disagree with label_names {label_names} for "
            f"row_id {sample.loc[mismatched.to_numpy(), ROW_ID].head(5).tolist()}"
        )
    predictions = predictions_frame(
        sample[ROW_ID],
        sample[LABEL],
        label_names,
        probabilities=served[probability_columns(label_names)].to_numpy(),
        predicted_labels=served[PREDICTED_LABEL].to_numpy(),
    )
    logger.info(
        "Served %d reviews: p50 %.1f ms, p95 %.1f ms, %.1f reviews/s",
        report["n_reviews"],
        report["latency_ms_p50"],
        report["latency_ms_p95"],
        report["throughput_reviews_per_s"],
    )
    return predictions, report


def compare_served_with_offline(
    served_predictions: pd.DataFrame,
    test_predictions: pd.DataFrame,
    label_names: list[str],
    mlflow_params: dict[str, Any],
) -> dict[str, Any]:
    """Check the served answers equal the evaluation pipeline's offline predictions.

    Probabilities must agree within ``probability_tolerance``; labels must agree
    wherever the offline top-two margin is wider than that (a tie may flip on float
    noise between batchings).

    Raises:
        ValueError: naming the disagreeing ``row_id`` s.
    """
    if served_predictions.empty:
        return _not_picked(MLFLOW)
    settings = MlflowTargetSettings.from_params(mlflow_params)
    columns = probability_columns(label_names)
    joined = served_predictions.merge(
        test_predictions[[ROW_ID, LABEL, PREDICTED_LABEL, *columns]],
        on=ROW_ID,
        how="left",
        suffixes=("_served", "_offline"),
        indicator=True,
        validate="one_to_one",
    )
    absent = joined.loc[joined["_merge"] != "both", ROW_ID]
    if not absent.empty:
        raise ValueError(
            f"test_predictions has no offline prediction for served row_id "
            f"{absent.head(5).tolist()} ({len(absent)} in all)"
        )
    served_p = joined[[f"{c}_served" for c in columns]].to_numpy()
    offline_p = joined[[f"{c}_offline" for c in columns]].to_numpy()
    difference = abs(served_p - offline_p).max(axis=1)
    ordered = offline_p.copy()
    ordered.sort(axis=1)
    margin = ordered[:, -1] - ordered[:, -2]
    label_differs = (
        joined[f"{PREDICTED_LABEL}_served"] != joined[f"{PREDICTED_LABEL}_offline"]
    ).to_numpy()
    tolerance = settings.probability_tolerance
    bad = (difference > tolerance) | (label_differs & (margin > tolerance))
    report = {
        "n_compared": len(joined),
        "n_label_disagreements": int(label_differs.sum()),
        "n_beyond_tolerance": int(bad.sum()),
        "max_probability_difference": float(difference.max()),
        "probability_tolerance": tolerance,
        "served_equals_offline": not bad.any(),
    }
    if bad.any():
        raise ValueError(
            f"Served predictions differ from test_predictions beyond {tolerance:g} for "
            f"row_id {joined.loc[bad, ROW_ID].head(10).tolist()}: {report}"
        )
    logger.info(
        "Served == offline for %d reviews (max probability difference %.2g)",
        len(joined),
        report["max_probability_difference"],
    )
    return report


def clean_up_mlflow_serving(
    serving_report: dict[str, Any],
    mlflow_model: dict[str, Any],
    deployment_metrics: dict[str, Any],
    mlflow_params: dict[str, Any],
) -> dict[str, Any]:
    """Confirm nothing is left serving; optionally delete the registered version.

    ``deployment_metrics`` is an input only so that clean-up runs after scoring.
    """
    if is_skipped(mlflow_model):
        return mlflow_model
    settings = MlflowTargetSettings.from_params(mlflow_params)
    still_listening = port_is_open(serving_report["host"], serving_report["port"])
    if still_listening:
        raise RuntimeError(
            f"Something still listens on {serving_report['host']}:{serving_report['port']} "
            "after the model server was stopped"
        )
    deleted_version = None
    if settings.delete_model_version:
        mlflow.MlflowClient().delete_model_version(
            mlflow_model["registered_model_name"], mlflow_model["version"]
        )
        deleted_version = mlflow_model["version"]
        logger.info(
            "Deleted %s version %s",
            mlflow_model["registered_model_name"],
            deleted_version,
        )
    return {
        "server_stopped": True,
        "server_exit_code": serving_report.get("server_exit_code"),
        "port_closed": not still_listening,
        "deleted_model_version": deleted_version,
        "registered_model": mlflow_model["model_uri"]
        if deleted_version is None
        else None,
    }


# --- target B: Azure OpenAI -----------------------------------------------------------


def _azure_settings(params: dict[str, Any]) -> AzureOpenAISettings:
    return AzureOpenAISettings.from_params(params)


def _label_words(
    label_names: Sequence[str], settings: AzureOpenAISettings
) -> list[str]:
    words = [settings.label_word(name) for name in label_names]
    if len({w.lower() for w in words}) != len(words):
        raise ValueError(
            f"Label words {words} (deployment.azure_openai.label_words) must differ"
        )
    return words


def export_fine_tuning_files(
    train_reviews: pd.DataFrame,
    validation_reviews: pd.DataFrame,
    label_names: list[str],
    *,
    targets: list[str],
    azure_params: dict[str, Any],
    seed: int,
) -> tuple[str, str]:
    """Chat-format JSONL for Azure OpenAI fine-tuning: train and validation files.

    Each line is ``{"messages": [system prompt, review, label word]}``; the reviews are
    stratified samples of ``examples.train`` and ``examples.validation``.
    """
    if AZURE_OPENAI not in check_targets(targets):
        return "", ""
    settings = _azure_settings(azure_params)
    words = _label_words(label_names, settings)
    files = []
    for reviews, size in (
        (train_reviews, settings.examples.train),
        (validation_reviews, settings.examples.validation),
    ):
        sample = sample_reviews(reviews, size, seed)
        files.append(to_jsonl(chat_examples(sample, words, settings.system_prompt)))
    return files[0], files[1]


def validate_fine_tuning_files(
    train_jsonl: str,
    validation_jsonl: str,
    label_names: list[str],
    targets: list[str],
    azure_params: dict[str, Any],
) -> dict[str, Any]:
    """Check the files before upload and estimate trained tokens and cost.

    See :func:`llm_finetuning.azure_openai.validate_chat_jsonl`; raises listing every
    problem.
    """
    if AZURE_OPENAI not in check_targets(targets):
        return _not_picked(AZURE_OPENAI)
    settings = _azure_settings(azure_params)
    report = validate_chat_jsonl(
        train_jsonl, validation_jsonl, _label_words(label_names, settings), settings
    )
    estimate = report["estimate"]
    logger.info(
        "Fine-tuning files valid: %d train / %d validation examples, about %d trained "
        "tokens, about $%.2f of training (%s)",
        report["files"]["train.jsonl"]["n_examples"],
        report["files"]["validation.jsonl"]["n_examples"],
        estimate["trained_tokens"],
        estimate["training_cost_usd"],
        report["token_counter"],
    )
    return report


def build_fine_tuning_request(
    validation_report: dict[str, Any], azure_params: dict[str, Any]
) -> dict[str, Any]:
    """The fine-tuning job request (base model, hyperparameters, seed, suffix).

    The file ids are added once the files are uploaded. ``validation_report`` is an
    input so that no request is built for files that failed validation.
    """
    if is_skipped(validation_report):
        return validation_report
    return fine_tuning_job_request(_azure_settings(azure_params).fine_tuning)


def _service(
    credentials: AzureCredentials, settings: AzureOpenAISettings
) -> AzureOpenAIService:
    return AzureOpenAIService(credentials, settings)


def _log_to_mlflow_run(tags: dict[str, Any]) -> None:
    """Tag the run kedro-mlflow opened (nothing when no run is active)."""
    if mlflow.active_run() is not None:
        mlflow.set_tags({k: str(v) for k, v in tags.items() if v is not None})


# The key under which a skipped or dry-run job record keeps the last real job's record,
# so that the next real run can still resume that job.
PREVIOUS_JOB = "previous_job"


def _resumable_record(previous: dict[str, Any] | None) -> dict[str, Any] | None:
    """The record of the real job an earlier job record names, if any."""
    if not previous:
        return None
    if (
        previous.get("job_id")
        and not previous.get("dry_run")
        and not is_skipped(previous)
    ):
        return previous
    carried = previous.get(PREVIOUS_JOB)
    return carried if isinstance(carried, dict) and carried.get("job_id") else None


def _keep_previous(
    record: dict[str, Any], previous: dict[str, Any] | None
) -> dict[str, Any]:
    """``record`` (skipped or dry run) still naming the last real job, if there was one."""
    resumable = _resumable_record(previous)
    return {**record, PREVIOUS_JOB: resumable} if resumable else record


def _resume(
    service: AzureOpenAIService,
    recorded: dict[str, Any] | None,
    identity: dict[str, Any],
    settings: AzureOpenAISettings,
) -> dict[str, Any] | None:
    """The recorded job's record when it can be picked up; else ``None``, logging why.

    It can when ``resume_job`` is on, the request is unchanged (:func:`job_identity`:
    endpoint, base model, hyperparameters, seed, suffix, both files' SHA-256) and the
    service still has the job, not failed or cancelled.
    """
    if recorded is None:
        return None
    job_id = recorded["job_id"]
    if not settings.resume_job:
        logger.info(
            "resume_job is false: creating a new fine-tuning job instead of picking up "
            "job %s of the job record",
            job_id,
        )
        return None
    changes = identity_changes(recorded.get("identity") or {}, identity)
    if changes:
        logger.warning(
            "The fine-tuning request changed since job %s was created (%s): creating "
            "a new job. Job %s is left as it is: cancel it in Azure if it still runs",
            job_id,
            ", ".join(changes),
            job_id,
        )
        return None
    job = service.retrieve_job(job_id)
    if job is None:
        logger.warning(
            "Fine-tuning job %s of the job record does not exist at %s: creating a new "
            "job",
            job_id,
            identity["endpoint"],
        )
        return None
    if job.status in JOB_FAILED_STATUSES:
        logger.warning(
            "Fine-tuning job %s of the job record %s: creating a new job",
            job_id,
            job.status,
        )
        return None
    logger.info(
        "Picking up fine-tuning job %s (status %s) from the job record: no new job",
        job_id,
        job.status,
    )
    return {**recorded, "status": job.status, "origin": "job record"}


def submit_fine_tuning_job(
    train_jsonl: str,
    validation_jsonl: str,
    job_request: dict[str, Any],
    previous_record: dict[str, Any],
    *,
    credentials: AzureCredentials,
    azure_params: dict[str, Any],
) -> dict[str, Any]:
    """Upload the files and create the fine-tuning job, unless it exists already.

    The record this node returns (``azure_openai_job_record``) is saved by Kedro, atomically,
    the moment the node returns: before the job is polled, so a run killed or failing
    after this point leaves the billed job's id on disk. The next run reads it back as
    ``previous_record`` (``azure_openai_previous_job_record``, the same file; ``{}``
    before the first job) and picks the job up (:func:`_resume`). Without a usable
    record, files already uploaded with the same content and a job the service holds
    for the same files and request (not failed or cancelled) are used instead of new
    ones; a request answered with a 5xx or a timeout is checked the same way before it
    is sent again (see :meth:`AzureOpenAIService.upload_file`, ``create_job``).

    Returns:
        ``job_id``, ``status``, ``origin`` (``created``, ``found on the service`` or
        ``job record``), the request with file ids, the file ids and the request's
        ``identity`` (what a rerun compares).
    """
    if is_skipped(job_request):
        return _keep_previous(job_request, previous_record)
    settings = _azure_settings(azure_params)
    if settings.is_dry_run(credentials):
        logger.info(
            "Azure OpenAI dry run: files and job request written, nothing sent "
            "(set AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_API_KEY, or dry_run: false)"
        )
        dry = {"dry_run": True, "status": "not submitted", "request": job_request}
        return _keep_previous(dry, previous_record)
    service = _service(credentials, settings)
    identity = job_identity(
        job_request, train_jsonl, validation_jsonl, credentials.endpoint
    )
    resumed = _resume(service, _resumable_record(previous_record), identity, settings)
    if resumed is not None:
        _log_to_mlflow_run({"azure_openai.job_id": resumed["job_id"]})
        return resumed
    file_ids = {}
    for key, stem, text in (
        ("training_file", "train", train_jsonl),
        ("validation_file", "validation", validation_jsonl),
    ):
        content = text.encode("utf-8")
        file_ids[key] = service.upload_file(upload_filename(stem, content), content)
    request = {**job_request, **file_ids}
    job, created = service.find_or_create_job(request, reuse=settings.resume_job)
    _log_to_mlflow_run({"azure_openai.job_id": job.id})
    logger.info(
        "Fine-tuning job %s (status %s) goes to the job record before polling: a "
        "rerun picks it up",
        job.id,
        job.status,
    )
    return {
        "dry_run": False,
        "job_id": job.id,
        "status": job.status,
        "origin": "created" if created else "found on the service",
        "created_at": job.created_at,
        "request": request,
        **file_ids,
        "identity": identity,
    }


def _without_previous(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != PREVIOUS_JOB}


def wait_for_fine_tuning_job(
    job_record: dict[str, Any],
    credentials: AzureCredentials,
    azure_params: dict[str, Any],
) -> tuple[dict[str, Any], str]:
    """Wait until the recorded job has succeeded; download its result file.

    Returns:
        The job record (job id, fine-tuned model name, status, file ids, result file
        ids, trained tokens, events), also set as tags of the MLflow run, and the
        content of the result file (``results.csv``: loss and accuracy per step).

    Raises:
        FineTuningJobFailed: the job ended ``failed`` or ``cancelled`` (the message is
            the service's); the next run creates a new job.
    """
    if is_skipped(job_record) or job_record.get("dry_run"):
        return _without_previous(job_record), ""
    settings = _azure_settings(azure_params)
    service = _service(credentials, settings)
    job_id = job_record["job_id"]
    try:
        job, events = service.wait_for_job(job_id)
    except FineTuningJobFailed:
        if settings.cleanup.delete_files:
            for key in ("training_file", "validation_file"):
                service.delete_file(job_record[key])
        raise
    results = "".join(service.file_text(file_id) for file_id in job.result_files or [])
    record = {
        **job_record,
        "status": job.status,
        "fine_tuned_model": job.fine_tuned_model,
        "result_files": list(job.result_files or []),
        "trained_tokens": job.trained_tokens,
        "events": events,
    }
    _log_to_mlflow_run(
        {
            "azure_openai.fine_tuned_model": job.fine_tuned_model,
            "azure_openai.trained_tokens": job.trained_tokens,
            "azure_openai.result_files": ",".join(record["result_files"]),
        }
    )
    logger.info("Fine-tuning job %s succeeded: %s", job.id, job.fine_tuned_model)
    return record, results


def deploy_fine_tuned_model(
    fine_tuning_job: dict[str, Any],
    credentials: AzureCredentials,
    azure_params: dict[str, Any],
) -> dict[str, Any]:
    """Deploy the fine-tuned model through Azure Resource Manager and wait for it.

    A deployment that ends ``Failed`` is deleted (``cleanup.on_failure``) before the
    error is raised: a failed deployment still occupies its name and quota.
    """
    if is_skipped(fine_tuning_job) or fine_tuning_job.get("dry_run"):
        return fine_tuning_job
    settings = _azure_settings(azure_params)
    service = _service(credentials, settings)
    try:
        resource = service.deploy(fine_tuning_job["fine_tuned_model"])
    except Exception:
        if settings.cleanup.on_failure:
            _delete_deployment_quietly(service)
        raise
    properties = resource.get("properties", {})
    record = {
        "dry_run": False,
        "deployment": settings.deployment.name,
        "model": fine_tuning_job["fine_tuned_model"],
        "provisioning_state": properties.get("provisioningState"),
        "sku": resource.get("sku"),
        "resource_id": resource.get("id"),
    }
    _log_to_mlflow_run({"azure_openai.deployment": settings.deployment.name})
    return record


def _delete_deployment_quietly(service: AzureOpenAIService) -> None:
    """Best-effort clean-up while another error is on its way up."""
    try:
        service.delete_deployment()
    except Exception as error:  # noqa: BLE001 - the original error matters more
        logger.error(
            "Could not delete deployment %s after a failure (%s): delete it in the "
            "Azure portal, it is billed per hour",
            service.settings.deployment.name,
            error,
        )


def predict_with_deployment(
    deployment: dict[str, Any],
    test_reviews: pd.DataFrame,
    label_names: list[str],
    *,
    credentials: AzureCredentials,
    azure_params: dict[str, Any],
    seed: int,
) -> pd.DataFrame:
    """Smoke-test the deployment with one review, then ask it about the test sample.

    Each answer is parsed into a class id (:func:`~llm_finetuning.azure_openai.parse_label_word`);
    an unparseable answer, or a prompt Azure's content filter refused, is
    ``predicted_label = -1`` and counts as an error in the score.

    Returns:
        ``row_id, label, predicted_label, answer, error`` for ``examples.test`` reviews.
    """
    if is_skipped(deployment) or deployment.get("dry_run"):
        return _empty_predictions(label_names, ("answer", "error"))
    settings = _azure_settings(azure_params)
    words = _label_words(label_names, settings)
    service = _service(credentials, settings)
    name = deployment["deployment"]
    sample = sample_reviews(test_reviews, settings.examples.test, seed)
    try:
        answers, errors = [], []
        for text in sample["text"]:
            answer, error = service.complete(name, settings.system_prompt, text)
            if not answers:
                # Smoke test: the first review shows the deployment answers at all
                # (an HTTP error has raised by now).
                logger.info("Deployment %s answers: %r", name, answer)
            answers.append(answer)
            errors.append(error)
    except Exception:
        if settings.cleanup.on_failure and settings.cleanup.delete_deployment:
            _delete_deployment_quietly(service)
        raise
    predicted = [parse_label_word(a, words) for a in answers]
    frame = predictions_frame(
        sample[ROW_ID], sample[LABEL], label_names, predicted_labels=predicted
    )
    frame["answer"] = pd.Series(answers, index=frame.index, dtype="object")
    frame["error"] = pd.Series(errors, index=frame.index, dtype="object")
    unparseable = sum(p == INVALID_LABEL for p in predicted)
    if unparseable:
        logger.warning(
            "%d of %d answers of deployment %s name no label word %s; they count as errors",
            unparseable,
            len(predicted),
            name,
            words,
        )
    return frame


def clean_up_azure_openai(
    deployment: dict[str, Any],
    fine_tuning_job: dict[str, Any],
    deployment_metrics: dict[str, Any],
    credentials: AzureCredentials,
    azure_params: dict[str, Any],
) -> dict[str, Any]:
    """Delete the deployment (billed per hour) and, if asked, the uploaded files.

    ``deployment_metrics`` is an input only so that clean-up runs after scoring. After
    a failed run, ``kedro run --pipeline deployment --nodes clean_up_azure_openai``
    deletes what the saved records name.
    """
    if is_skipped(fine_tuning_job):
        return fine_tuning_job
    if fine_tuning_job.get("dry_run"):
        return _skipped("dry run: nothing was created in Azure")
    settings = _azure_settings(azure_params)
    service = _service(credentials, settings)
    report: dict[str, Any] = {"deployment": None, "deleted_files": []}
    if settings.cleanup.delete_deployment and not is_skipped(deployment):
        name = deployment.get("deployment", settings.deployment.name)
        report["deployment"] = name
        report["deployment_deleted"] = service.delete_deployment(name)
    if settings.cleanup.delete_files:
        for key in ("training_file", "validation_file"):
            file_id = fine_tuning_job.get(key)
            if file_id and service.delete_file(file_id):
                report["deleted_files"].append(file_id)
    logger.info("Azure OpenAI clean-up: %s", report)
    return report


# --- both targets ---------------------------------------------------------------------


def score_deployment(
    predictions: pd.DataFrame,
    label_names: list[str],
    scoring: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """Score a deployed model's predictions exactly as the evaluation pipeline does
    (:func:`llm_finetuning.pipelines.evaluation.nodes.score_classifier`)."""
    if predictions.empty:
        return _skipped("no predictions: target not picked or dry run")
    return score_classifier(predictions, label_names, scoring, seed)


def _for_mlflow(flat: dict[str, float]) -> dict[str, dict[str, float]]:
    """kedro-mlflow's ``MlflowMetricsHistoryDataset`` format."""
    return {key: {"value": value, "step": 0} for key, value in flat.items()}


def mlflow_target_metrics(
    serving_report: dict[str, Any], served_metrics: dict[str, Any]
) -> dict[str, dict[str, float]]:
    """Startup time, latency p50/p95, throughput and test metrics of the served model."""
    flat: dict[str, float] = {}
    if not is_skipped(serving_report):
        for key in (
            "startup_s",
            "latency_ms_p50",
            "latency_ms_p95",
            "throughput_reviews_per_s",
        ):
            if serving_report.get(key) is not None:
                flat[f"serving.{key}"] = float(serving_report[key])
    if not is_skipped(served_metrics):
        flat.update(flatten_metrics(served_metrics, "test"))
    return _for_mlflow(flat)


def azure_openai_target_metrics(
    validation_report: dict[str, Any], test_metrics: dict[str, Any]
) -> dict[str, dict[str, float]]:
    """The trained-token and cost estimate and the deployment's test metrics."""
    flat: dict[str, float] = {}
    if not is_skipped(validation_report):
        estimate = validation_report["estimate"]
        flat["estimated_trained_tokens"] = float(estimate["trained_tokens"])
        flat["estimated_training_cost_usd"] = float(estimate["training_cost_usd"])
    if not is_skipped(test_metrics):
        flat.update(flatten_metrics(test_metrics, "test"))
    return _for_mlflow(flat)
