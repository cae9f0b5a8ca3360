"""Nodes of the ``deployment`` pipelines: two targets, each ending in a smoke test, a
score by the evaluation pipeline's scoring pipeline (wired in ``pipeline``) and a
clean-up.

* ``deployment_mlflow``: register the fine-tuned model as an MLflow pyfunc model, serve
  it on 127.0.0.1, check served == offline predictions, measure latency, stop the server.
* ``deployment_azure_openai``: export and validate chat-format JSONL, fine-tune a hosted
  model through Azure OpenAI, deploy it through Azure Resource Manager, predict the test
  sample, delete the deployment. Its first three nodes, which call nothing in Azure, are
  also the ``deployment_azure_openai_dry_run`` pipeline.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from llm_finetuning.datasets.model_folder import TextClassifier
from llm_finetuning.metrics import flatten_metrics
from llm_finetuning.models import ModelParams
from llm_finetuning.pipelines.deployment.azure_openai.chat_files import (
    INVALID_LABEL,
    chat_examples,
    fine_tuning_job_request,
    parse_label_word,
    to_jsonl,
    validate_chat_jsonl,
)
from llm_finetuning.pipelines.deployment.azure_openai.credentials import (
    AzureCredentials,
)
from llm_finetuning.pipelines.deployment.azure_openai.job_record import (
    identity_changes,
    job_identity,
    upload_filename,
)
from llm_finetuning.pipelines.deployment.azure_openai.settings import (
    AzureOpenAIParams,
)
from llm_finetuning.pipelines.deployment.mlflow_serving import (
    MlflowTargetParams,
    log_and_register,
    port_is_open,
    smoke_test_server,
)
from llm_finetuning.predictions import (
    LABEL,
    PREDICTED_LABEL,
    ROW_ID,
    predictions_frame,
    probability_columns,
)

# MLflow, scikit-learn and the Azure and OpenAI SDKs (control_plane, data_plane,
# waiting) load in the nodes that call them, so building the pipelines, and running
# any other pipeline, does not import them.
if TYPE_CHECKING:
    from llm_finetuning.pipelines.deployment.azure_openai.control_plane import (
        AzureDeployments,
    )
    from llm_finetuning.pipelines.deployment.azure_openai.data_plane import (
        AzureOpenAIDataPlane,
    )

logger = logging.getLogger(__name__)

INPUT_EXAMPLE_CHARS = 300


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
        from sklearn.model_selection import train_test_split

        sample, _ = train_test_split(
            reviews, train_size=size, stratify=stratify, random_state=seed
        )
    return sample.sort_values(ROW_ID).reset_index(drop=True)


# --- target A: MLflow model -----------------------------------------------------------


def mlflow_test_sample(
    test_reviews: pd.DataFrame, mlflow_params: MlflowTargetParams, seed: int
) -> pd.DataFrame:
    """The test reviews sent to the served model (``sample_size``; also what its
    predictions are scored against)."""
    return sample_reviews(test_reviews, mlflow_params.sample_size, seed)


def register_mlflow_model(
    fine_tuned_model: TextClassifier,
    test_reviews: pd.DataFrame,
    mlflow_params: MlflowTargetParams,
    model: ModelParams,
) -> dict[str, Any]:
    """Log the fine-tuned model as an MLflow pyfunc model and register it.

    Returns:
        ``registered_model_name``, ``version``, ``model_uri`` (``models:/name/version``),
        ``run_id``, ``pip_requirements``, ...: what
        :func:`~llm_finetuning.pipelines.deployment.mlflow_serving.log_and_register` logged.
    """
    examples = [text[:INPUT_EXAMPLE_CHARS] for text in test_reviews["text"].head(2)]
    return log_and_register(
        fine_tuned_model,
        mlflow_params,
        examples,
        max_length=model.max_length,
        truncation=model.truncation,
        head_tokens=model.head_tokens,
    )


def serve_mlflow_model(
    mlflow_model: dict[str, Any],
    sample: pd.DataFrame,
    label_names: list[str],
    mlflow_params: MlflowTargetParams,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Serve the registered model on 127.0.0.1 and send it the sampled test reviews.

    The server is stopped before the node returns, also when a check fails.

    Returns:
        The served predictions (``test_predictions`` schema, the sampled rows) and the
        serving report (startup time, malformed requests, latency p50/p95, throughput).
    """
    served, report = smoke_test_server(
        mlflow_model["model_uri"],
        sample["text"].tolist(),
        mlflow_params,
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
    mlflow_params: MlflowTargetParams,
) -> dict[str, Any]:
    """Check the served answers equal the evaluation pipeline's offline predictions.

    Probabilities must agree within ``probability_tolerance``; labels must agree
    wherever the offline top-two margin is wider than that (a tie may flip on float
    noise between batchings).

    Raises:
        ValueError: naming the disagreeing ``row_id`` s, or when there are no offline
            predictions (``test_predictions`` loads ``None`` until evaluation wrote it).
    """
    if test_predictions is None:
        raise ValueError(
            "test_predictions has not been written: run the evaluation pipeline "
            "before deployment_mlflow (kedro run --pipelines evaluation)"
        )
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
    tolerance = mlflow_params.probability_tolerance
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
    served_metrics: dict[str, Any],
    mlflow_params: MlflowTargetParams,
) -> dict[str, Any]:
    """Confirm nothing is left serving; optionally delete the registered version.

    ``served_metrics`` is an input only so that clean-up runs after scoring.
    """
    still_listening = port_is_open(serving_report["host"], serving_report["port"])
    if still_listening:
        raise RuntimeError(
            f"Something still listens on {serving_report['host']}:{serving_report['port']} "
            "after the model server was stopped"
        )
    deleted_version = None
    if mlflow_params.delete_model_version:
        import mlflow

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


def _label_words(label_names: Sequence[str], settings: AzureOpenAIParams) -> list[str]:
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
    azure_params: AzureOpenAIParams,
    seed: int,
) -> tuple[str, str]:
    """Chat-format JSONL for Azure OpenAI fine-tuning: train and validation files.

    Each line is ``{"messages": [system prompt, review, label word]}``; the reviews are
    stratified samples of ``examples.train`` and ``examples.validation``.
    """
    words = _label_words(label_names, azure_params)
    files = []
    for reviews, size in (
        (train_reviews, azure_params.examples.train),
        (validation_reviews, azure_params.examples.validation),
    ):
        sample = sample_reviews(reviews, size, seed)
        files.append(to_jsonl(chat_examples(sample, words, azure_params.system_prompt)))
    return files[0], files[1]


def validate_fine_tuning_files(
    train_jsonl: str,
    validation_jsonl: str,
    label_names: list[str],
    azure_params: AzureOpenAIParams,
) -> dict[str, Any]:
    """Check the files before upload and estimate trained tokens and cost (see
    :func:`~.azure_openai.chat_files.validate_chat_jsonl`; raises listing every problem)."""
    report = validate_chat_jsonl(
        train_jsonl,
        validation_jsonl,
        _label_words(label_names, azure_params),
        azure_params,
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
    validation_report: dict[str, Any], azure_params: AzureOpenAIParams
) -> dict[str, Any]:
    """The fine-tuning job request (base model, hyperparameters, seed, suffix).

    The file ids are added once the files are uploaded. ``validation_report`` is an
    input so that no request is built for files that failed validation.
    """
    return fine_tuning_job_request(azure_params.fine_tuning)


def _data_plane(
    credentials: AzureCredentials, settings: AzureOpenAIParams
) -> AzureOpenAIDataPlane:
    from llm_finetuning.pipelines.deployment.azure_openai.data_plane import (
        AzureOpenAIDataPlane,
        openai_client,
    )

    return AzureOpenAIDataPlane(openai_client(credentials, settings), settings)


def _deployments(
    credentials: AzureCredentials, settings: AzureOpenAIParams
) -> AzureDeployments:
    from llm_finetuning.pipelines.deployment.azure_openai.control_plane import (
        AzureDeployments,
        management_client,
    )

    return AzureDeployments(
        management_client(credentials, settings), credentials, settings
    )


def _log_to_mlflow_run(tags: dict[str, Any]) -> None:
    """Tag the run kedro-mlflow opened (nothing when no run is active)."""
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.set_tags({k: str(v) for k, v in tags.items() if v is not None})


def _resumable_record(previous: dict[str, Any]) -> dict[str, Any] | None:
    """The real job an earlier record names: the record itself, or the job a record
    written by an older version (dry run) kept under ``previous_job``."""
    if previous.get("job_id") and not previous.get("dry_run"):
        return previous
    carried = previous.get("previous_job")
    return carried if isinstance(carried, dict) and carried.get("job_id") else None


def _resume(
    service: AzureOpenAIDataPlane,
    recorded: dict[str, Any] | None,
    identity: dict[str, Any],
    settings: AzureOpenAIParams,
) -> dict[str, Any] | None:
    """The recorded job's record when it can be picked up; else ``None``, logging why.

    It can when ``resume_job`` is on, the request is unchanged (endpoint, base model,
    hyperparameters, seed, suffix, both files' SHA-256) and the service still has the
    job, not failed or cancelled.
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
    from llm_finetuning.pipelines.deployment.azure_openai.data_plane import (
        JOB_FAILED_STATUSES,
    )

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
    azure_params: AzureOpenAIParams,
) -> dict[str, Any]:
    """Upload the files and create the fine-tuning job, unless it exists already.

    The record this node returns (``azure_openai_job_record``) is saved by Kedro,
    atomically, the moment the node returns: before the job is polled, so a run killed
    or failing after this point leaves the billed job's id on disk. The next run reads
    it back as ``previous_record`` (the same file; ``{}`` before the first job) and
    picks the job up (:func:`_resume`). Without a usable record, files already uploaded
    with the same content and a job the service holds for the same files and request
    (not failed or cancelled) are used instead of new ones; a request answered with a
    5xx or a timeout is checked the same way before it is sent again.

    Returns:
        ``job_id``, ``status``, ``origin`` (``created``, ``found on the service`` or
        ``job record``), the request with file ids, the file ids and the request's
        ``identity`` (what a rerun compares).
    """
    service = _data_plane(credentials, azure_params)
    identity = job_identity(
        job_request, train_jsonl, validation_jsonl, credentials.endpoint
    )
    recorded = _resumable_record(previous_record)
    resumed = _resume(service, recorded, identity, azure_params)
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
    job, created = service.find_or_create_job(request, reuse=azure_params.resume_job)
    _log_to_mlflow_run({"azure_openai.job_id": job.id})
    logger.info(
        "Fine-tuning job %s (status %s) goes to the job record before polling: a "
        "rerun picks it up",
        job.id,
        job.status,
    )
    return {
        "job_id": job.id,
        "status": job.status,
        "origin": "created" if created else "found on the service",
        "created_at": job.created_at,
        "request": request,
        **file_ids,
        "identity": identity,
    }


def wait_for_fine_tuning_job(
    job_record: dict[str, Any],
    credentials: AzureCredentials,
    azure_params: AzureOpenAIParams,
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
    from llm_finetuning.pipelines.deployment.azure_openai.waiting import (
        FineTuningJobFailed,
    )

    service = _data_plane(credentials, azure_params)
    job_id = job_record["job_id"]
    try:
        job, events = service.wait_for_job(job_id)
    except FineTuningJobFailed:
        if azure_params.cleanup.delete_files:
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


def _delete_deployment_quietly(deployments: AzureDeployments) -> None:
    """Best-effort clean-up while another error is on its way up."""
    try:
        deployments.delete()
    except Exception as error:  # noqa: BLE001 - the original error matters more
        logger.error(
            "Could not delete deployment %s after a failure (%s): delete it in the "
            "Azure portal, it is billed per hour",
            deployments.settings.deployment.name,
            error,
        )


def deploy_fine_tuned_model(
    fine_tuning_job: dict[str, Any],
    credentials: AzureCredentials,
    azure_params: AzureOpenAIParams,
) -> dict[str, Any]:
    """Deploy the fine-tuned model through Azure Resource Manager and wait for it.

    A deployment that fails is deleted (``cleanup.on_failure``) before the error is
    raised: a failed deployment still occupies its name and quota.
    """
    deployments = _deployments(credentials, azure_params)
    try:
        resource = deployments.deploy(fine_tuning_job["fine_tuned_model"])
    except Exception:
        if azure_params.cleanup.on_failure:
            _delete_deployment_quietly(deployments)
        raise
    from llm_finetuning.pipelines.deployment.azure_openai.control_plane import (
        deployment_record,
    )

    _log_to_mlflow_run({"azure_openai.deployment": resource.name})
    return deployment_record(resource)


def azure_openai_test_sample(
    test_reviews: pd.DataFrame, azure_params: AzureOpenAIParams, seed: int
) -> pd.DataFrame:
    """The test reviews the deployment is asked about (``examples.test``; also what its
    answers are scored against)."""
    return sample_reviews(test_reviews, azure_params.examples.test, seed)


def _ask(
    service: AzureOpenAIDataPlane,
    deployment: str,
    sample: pd.DataFrame,
    label_names: Sequence[str],
    azure_params: AzureOpenAIParams,
) -> pd.DataFrame:
    """Ask ``deployment`` about every sampled review: a predictions frame with the
    ``answer``, ``error``, ``latency_ms``, ``prompt_tokens`` and ``completion_tokens``
    of each request (the model comparison reads the last three)."""
    words = _label_words(label_names, azure_params)
    completions = []
    for text in sample["text"]:
        completion = service.complete_with_usage(
            deployment, azure_params.system_prompt, text
        )
        if not completions:
            # Smoke test: the first review shows the deployment answers at all
            # (an HTTP error has raised by now).
            logger.info("Deployment %s answers: %r", deployment, completion.answer)
        completions.append(completion)
    predicted = [parse_label_word(c.answer, words) for c in completions]
    frame = predictions_frame(
        sample[ROW_ID], sample[LABEL], label_names, predicted_labels=predicted
    )
    for column, dtype in (
        ("answer", "object"),
        ("error", "object"),
        ("latency_ms", "float64"),
        ("prompt_tokens", "Int64"),
        ("completion_tokens", "Int64"),
    ):
        values = [getattr(c, column) for c in completions]
        frame[column] = pd.Series(values, index=frame.index, dtype=dtype)
    unparseable = sum(p == INVALID_LABEL for p in predicted)
    if unparseable:
        logger.warning(
            "%d of %d answers of deployment %s name no label word %s; they count as errors",
            unparseable,
            len(predicted),
            deployment,
            words,
        )
    return frame


def predict_with_deployment(
    deployment: dict[str, Any],
    sample: pd.DataFrame,
    label_names: list[str],
    credentials: AzureCredentials,
    azure_params: AzureOpenAIParams,
) -> pd.DataFrame:
    """Smoke-test the deployment with one review, then ask it about the test sample.

    Each answer is parsed into a class id (:func:`~.azure_openai.chat_files.parse_label_word`);
    an unparseable answer, or a prompt Azure's content filter refused, is
    ``predicted_label = -1`` and counts as an error in the score.

    Returns:
        ``row_id, label, predicted_label, answer, error, latency_ms, prompt_tokens,
        completion_tokens`` for the sampled reviews.
    """
    service = _data_plane(credentials, azure_params)
    try:
        return _ask(
            service, deployment["deployment"], sample, label_names, azure_params
        )
    except Exception:
        cleanup = azure_params.cleanup
        if cleanup.on_failure and cleanup.delete_deployment:
            _delete_deployment_quietly(_deployments(credentials, azure_params))
        raise


def predict_with_base_model(
    sample: pd.DataFrame,
    label_names: list[str],
    credentials: AzureCredentials,
    azure_params: AzureOpenAIParams,
    cleanup_report: dict[str, Any],
) -> pd.DataFrame:
    """The base model, zero-shot, on the same test sample: the model comparison's
    "before fine-tuning" row.

    It asks ``base_model_deployment``, an existing deployment of the base model (this
    pipeline does not create or delete it), the same system prompt and reviews as the
    fine-tuned deployment. Without one it returns no rows and the comparison says the
    base model did not run. ``cleanup_report`` is an input only so that this runs after
    the fine-tuned deployment, billed per hour, is deleted.
    """
    name = azure_params.base_model_deployment
    if name is None:
        logger.info(
            "deployment.azure_openai.base_model_deployment is not set: the base model "
            "is not asked (no 'before fine-tuning' row in the model comparison)"
        )
        return pd.DataFrame(
            {
                column: pd.Series(dtype="int64")
                for column in (ROW_ID, LABEL, PREDICTED_LABEL)
            }
        )
    return _ask(
        _data_plane(credentials, azure_params), name, sample, label_names, azure_params
    )


def clean_up_azure_openai(
    deployment: dict[str, Any],
    fine_tuning_job: dict[str, Any],
    test_metrics: dict[str, Any],
    credentials: AzureCredentials,
    azure_params: AzureOpenAIParams,
) -> dict[str, Any]:
    """Delete the deployment (billed per hour) and, if asked, the uploaded files.

    ``test_metrics`` is an input only so that clean-up runs after scoring. After a
    failed run, ``kedro run --pipelines deployment_azure_openai --nodes
    deployment.clean_up_azure_openai`` deletes what the saved records name.
    """
    report: dict[str, Any] = {"deployment": None, "deleted_files": []}
    if azure_params.cleanup.delete_deployment:
        name = deployment["deployment"]
        report["deployment"] = name
        report["deployment_deleted"] = _deployments(credentials, azure_params).delete(
            name
        )
    if azure_params.cleanup.delete_files:
        service = _data_plane(credentials, azure_params)
        for key in ("training_file", "validation_file"):
            file_id = fine_tuning_job.get(key)
            if file_id and service.delete_file(file_id):
                report["deleted_files"].append(file_id)
    logger.info("Azure OpenAI clean-up: %s", report)
    return report


# --- MLflow metrics of both targets -----------------------------------------------------


def _for_mlflow(flat: dict[str, float]) -> dict[str, dict[str, float]]:
    """kedro-mlflow's ``MlflowMetricsHistoryDataset`` format."""
    return {key: {"value": value, "step": 0} for key, value in flat.items()}


def mlflow_target_metrics(
    serving_report: dict[str, Any], served_metrics: dict[str, Any]
) -> dict[str, dict[str, float]]:
    """Startup time, latency p50/p95, throughput and test metrics of the served model."""
    flat = {
        f"serving.{key}": float(serving_report[key])
        for key in (
            "startup_s",
            "latency_ms_p50",
            "latency_ms_p95",
            "throughput_reviews_per_s",
        )
        if serving_report.get(key) is not None
    }
    flat.update(flatten_metrics(served_metrics, "test"))
    return _for_mlflow(flat)


def azure_openai_estimate_metrics(
    validation_report: dict[str, Any],
) -> dict[str, dict[str, float]]:
    """The trained-token and cost estimate (known before anything is sent)."""
    estimate = validation_report["estimate"]
    return _for_mlflow(
        {
            "estimated_trained_tokens": float(estimate["trained_tokens"]),
            "estimated_training_cost_usd": float(estimate["training_cost_usd"]),
        }
    )


def azure_openai_target_metrics(
    test_metrics: dict[str, Any],
) -> dict[str, dict[str, float]]:
    """The deployment's test metrics."""
    return _for_mlflow(flatten_metrics(test_metrics, "test"))
