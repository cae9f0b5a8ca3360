"""The ``deployment`` pipelines through Kedro and kedro-mlflow.

``deployment_azure_openai`` runs against the fake Azure server (success, garbage
answers, a failed job, a failed deployment, retries) with a recognisable fake key that
must not leak; ``deployment_azure_openai_dry_run`` without credentials. Each target
needs only its own inputs. ``deployment_mlflow`` (one test, about 30-40 s: ``mlflow
models serve`` starts a real server) runs after data_processing, training and
evaluation in the test env.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from tests.pipelines.deployment.fake_azure import FakeAzure

DEMO_DATA = Path(__file__).resolve().parents[3] / "src" / "llm_finetuning" / "demo_data"
LABEL_NAMES = ["negative", "positive"]
FAKE_KEY = "sk-LEAK-CANARY-api-key-5f9e2c"
FAKE_TOKEN = "LEAK-CANARY-arm-token-81d4aa"


@pytest.fixture
def review_splits(tmp_path: Path) -> dict[str, pd.DataFrame]:
    """data_processing's outputs, written where the catalog reads them (tmp_path)."""
    frames = {}
    for split, source, rows in (
        ("train", "train.jsonl", slice(0, 60)),
        ("validation", "train.jsonl", slice(60, 80)),
        ("test", "test.jsonl", slice(0, 40)),
    ):
        raw = pd.read_json(DEMO_DATA / source, lines=True).iloc[rows]
        frames[split] = pd.DataFrame(
            {
                "row_id": range(len(raw)),
                "text": raw["review"].to_numpy(),
                "label": (raw["sentiment"] == "positive").astype("int64").to_numpy(),
            }
        )
    primary = tmp_path / "data" / "03_primary"
    primary.mkdir(parents=True)
    for split, frame in frames.items():
        frame.to_parquet(primary / f"{split}_reviews.parquet")
    (primary / "label_names.json").write_text(json.dumps(LABEL_NAMES))
    return frames


@pytest.fixture
def fake_azure(monkeypatch: pytest.MonkeyPatch):
    """The fake server, with the credentials in the environment as a user would set them."""
    with FakeAzure(api_key=FAKE_KEY, management_token=FAKE_TOKEN) as fake:
        monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", fake.url)
        monkeypatch.setenv("AZURE_OPENAI_API_KEY", FAKE_KEY)
        monkeypatch.setenv(
            "AZURE_SUBSCRIPTION_ID", "00000000-0000-0000-0000-000000000000"
        )
        monkeypatch.setenv("AZURE_RESOURCE_GROUP", "rg-llm")
        monkeypatch.setenv("AZURE_OPENAI_ACCOUNT", "aoai-llm")
        monkeypatch.setenv("AZURE_MANAGEMENT_TOKEN", FAKE_TOKEN)
        for name, value in fake.trusting_environment().items():
            monkeypatch.setenv(name, value)
        yield fake


def azure_params(fake: FakeAzure, **azure) -> dict:
    """Runtime parameters: Resource Manager at the fake server."""
    block = {**azure, "deployment": {"management_endpoint": fake.url}}
    return {"deployment": {"azure_openai": block}}


def run_azure(
    run_kedro, runtime_params: dict | None = None, pipeline: str = ""
) -> None:
    run_kedro(
        env="test",
        pipeline_names=[pipeline or "deployment_azure_openai"],
        runtime_params=runtime_params,
    )


def read_json(tmp_path: Path, relative: str):
    return json.loads((tmp_path / relative).read_text())


REPORTING = "data/08_reporting/deployment"


def test_azure_flow_fine_tunes_deploys_scores_and_cleans_up_without_leaking_the_key(
    run_kedro, review_splits, fake_azure, tmp_path, caplog
):
    # Everything at DEBUG: the project's, Kedro's, the SDK's and the HTTP clients' loggers.
    for name in (
        None,
        "llm_finetuning",
        "kedro",
        "openai",
        "httpx",
        "httpx2",
        "httpcore",
        "azure",
    ):
        caplog.set_level(logging.DEBUG, logger=name)
    run_azure(run_kedro, azure_params(fake_azure))
    assert (
        "HTTP Request: POST" in caplog.text
    )  # the HTTP clients' own logs were captured

    # Files: chat format, sizes from conf/test, uploaded as they were validated.
    train_jsonl = (tmp_path / "data/05_model_input/azure_openai/train.jsonl").read_text(
        "utf-8"
    )
    assert len(train_jsonl.splitlines()) == 20
    uploaded = sorted(
        f["content"] for f in fake_azure.files.values() if f["purpose"] == "fine-tune"
    )
    assert train_jsonl.encode("utf-8") in uploaded
    job_request = fake_azure.calls("POST", r"^/openai/fine_tuning/jobs$")[0]
    body = json.loads(job_request.body)
    assert body["model"] == "gpt-4o-mini-2024-07-18"
    assert body["hyperparameters"] == {"n_epochs": 2} and body["seed"] == 42
    assert body["suffix"] == "imdb-sentiment"

    # The job record: id, fine-tuned model, result files, also in the MLflow run.
    job = read_json(tmp_path, "data/06_models/azure_openai/fine_tuning_job.json")
    assert job["status"] == "succeeded" and job["fine_tuned_model"].endswith(
        job["job_id"][-4:]
    )
    assert job["events"][-1]["message"] == "The job has successfully completed."
    results = (
        tmp_path / REPORTING / "azure_openai_fine_tuning_results.csv"
    ).read_text()
    assert results.startswith("step,train_loss")

    # Deployed through Resource Manager, scored with the evaluation metrics, deleted.
    deployment = read_json(tmp_path, "data/06_models/azure_openai/deployment.json")
    assert deployment["provisioning_state"] == "Succeeded"
    predictions = pd.read_parquet(
        tmp_path
        / "data/07_model_output/deployment/azure_openai_test_predictions.parquet"
    )
    assert len(predictions) == 12 and set(predictions["predicted_label"]) <= {0, 1}
    metrics = read_json(tmp_path, f"{REPORTING}/azure_openai_metrics.json")
    assert metrics["n_examples"] == 12 and metrics["n_invalid_predictions"] == 0
    assert 0 <= metrics["metrics"]["accuracy"]["value"] <= 1
    assert "roc_auc" in metrics["skipped"]  # labels only: no probabilities
    assert (tmp_path / REPORTING / "azure_openai/confusion_matrix.png").is_file()
    cleanup = read_json(tmp_path, f"{REPORTING}/azure_openai_cleanup_report.json")
    assert cleanup["deployment_deleted"] is True
    assert fake_azure.deleted_deployments == ["imdb-sentiment-ft"]
    assert not fake_azure.deployments

    # MLflow: tags, metrics and artifacts of the run kedro-mlflow opened.
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.data.tags["azure_openai.job_id"] == job["job_id"]
    assert run.data.tags["azure_openai.fine_tuned_model"] == job["fine_tuned_model"]
    assert "deployment.azure_openai.test.accuracy" in run.data.metrics
    assert "deployment.azure_openai.estimated_training_cost_usd" in run.data.metrics
    artifacts = Path(
        mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, dst_path=str(tmp_path / "artifacts")
        )
    )
    assert (artifacts / "deployment/azure_openai/fine_tuning_job.json").is_file()

    # No secret anywhere: logs, MLflow params/tags/artifacts, written files (mlflow.db too).
    for secret in (FAKE_KEY, FAKE_TOKEN):
        assert secret not in caplog.text
        assert all(secret not in str(v) for v in run.data.params.values())
        assert all(secret not in str(v) for v in run.data.tags.values())
        leaking = [
            str(path)
            for path in tmp_path.rglob("*")
            if path.is_file() and secret.encode() in path.read_bytes()
        ]
        assert leaking == []
    # ...and the fake server did receive them, so the check above can fail.
    assert (
        fake_azure.calls("PUT", "/deployments/")[0].headers["authorization"]
        == f"Bearer {FAKE_TOKEN}"
    )


def write_local_predictions(tmp_path: Path, test: pd.DataFrame) -> None:
    """What the evaluation pipeline leaves: the fine-tuned model right on every test
    row, the majority class on half of them, TF-IDF wrong on every fourth."""
    from llm_finetuning.predictions import predictions_frame

    labels = test["label"].to_numpy()
    folder = tmp_path / "data/07_model_output"
    (folder / "baselines").mkdir(parents=True)
    for name, predicted in (
        ("test_predictions", labels),
        ("baselines/majority_class_predictions", labels * 0 + 1),
        ("baselines/tfidf_logreg_predictions", labels ^ (test["row_id"] % 4 == 0)),
    ):
        predictions_frame(
            test["row_id"], labels, LABEL_NAMES, predicted_labels=predicted
        ).to_parquet(folder / f"{name}.parquet")


def test_the_comparison_puts_both_azure_models_beside_the_local_ones_on_the_same_rows(
    run_kedro, review_splits, fake_azure, tmp_path
):
    write_local_predictions(tmp_path, review_splits["test"])
    fake_azure.add_existing_deployment("gpt-4o-mini")
    fake_azure.answers_by_deployment["gpt-4o-mini"] = lambda review: "positive"
    run_azure(run_kedro, azure_params(fake_azure, base_model_deployment="gpt-4o-mini"))

    fine_tuned = pd.read_parquet(
        tmp_path
        / "data/07_model_output/deployment/azure_openai_test_predictions.parquet"
    )
    base = pd.read_parquet(
        tmp_path
        / "data/07_model_output/deployment/azure_openai_base_predictions.parquet"
    )
    assert base["row_id"].tolist() == fine_tuned["row_id"].tolist()
    assert set(base["predicted_label"]) == {1} and base["latency_ms"].gt(0).all()
    # The base model is asked after the billed fine-tuned deployment is deleted, and
    # its own deployment is left alone.
    paths = [r.path for r in fake_azure.requests]
    deleted = max(i for i, r in enumerate(fake_azure.requests) if r.method == "DELETE")
    asked_base = [i for i, p in enumerate(paths) if "/gpt-4o-mini/chat" in p]
    assert len(asked_base) == 12 and min(asked_base) > deleted
    assert "gpt-4o-mini" in fake_azure.deployments

    comparison = read_json(tmp_path, "data/08_reporting/model_comparison.json")
    models = comparison["models"]
    assert list(models) == [
        "fine_tuned",
        "majority_class",
        "tfidf_logreg",
        "azure_openai_base",
        "azure_openai",
    ]
    assert comparison["n_common_rows"] == 12 == len(fine_tuned)
    assert {m["n_rows"] for m in models.values()} == {12}
    assert comparison["limited_to_common_rows"] == [
        "fine_tuned",
        "majority_class",
        "tfidf_logreg",
    ]
    assert set(comparison["not_compared"]) == {"mlflow_serving", "databricks_serving"}
    expected = (fine_tuned["predicted_label"] == fine_tuned["label"]).mean()
    assert models["azure_openai"]["accuracy"]["value"] == pytest.approx(expected)
    gap = models["azure_openai"]["reference_minus_model"]["accuracy"]["value"]
    assert gap == pytest.approx(1 - expected)
    assert models["azure_openai"]["latency_ms_per_prediction"] > 0
    # 12,345 trained tokens (the fake's job) at the default 3.30 USD per 1M tokens
    assert models["azure_openai"]["training_cost"]["usd"] == pytest.approx(0.0407, 1e-2)
    assert models["azure_openai"]["cost_per_1000_predictions"]["text"].startswith(
        "n/a (prices not set; 50 + 1.0 tokens"
    )
    table = (tmp_path / "data/08_reporting/model_comparison.md").read_text()
    assert "| Azure OpenAI base model, zero-shot |" in table
    assert "same **12 test rows**" in table

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert "model_comparison.azure_openai_base.accuracy" in run.data.metrics
    assert "model_comparison.azure_openai.reference_minus_model.accuracy.ci_low" in (
        run.data.metrics
    )


def test_garbage_answers_count_as_errors(
    run_kedro, review_splits, fake_azure, tmp_path
):
    answers = iter(
        [
            "positive",
            "Negative!",
            "I am not sure.",
            "positive and negative",
            "",
            "The review is positive",
        ]
        * 5
    )
    fake_azure.answer = lambda review: next(answers)
    run_azure(run_kedro, azure_params(fake_azure))
    predictions = pd.read_parquet(
        tmp_path
        / "data/07_model_output/deployment/azure_openai_test_predictions.parquet"
    )
    assert predictions["predicted_label"].tolist() == [1, 0, -1, -1, -1, 1] * 2
    assert predictions.loc[predictions["predicted_label"] == -1, "answer"].tolist()[
        :2
    ] == [
        "I am not sure.",
        "positive and negative",
    ]
    metrics = read_json(tmp_path, f"{REPORTING}/azure_openai_metrics.json")
    assert (
        metrics["n_invalid_predictions"] == 6
        and metrics["invalid_prediction_rate"] == 0.5
    )
    assert metrics["metrics"]["accuracy"]["value"] <= 0.5
    assert fake_azure.deleted_deployments == ["imdb-sentiment-ft"]


def test_a_failed_job_stops_the_run_with_the_service_message(
    run_kedro, review_splits, fake_azure
):
    fake_azure.job_outcome = "failed"
    with pytest.raises(
        Exception, match="failed: invalid_training_file: The training file has too few"
    ):
        run_azure(run_kedro, azure_params(fake_azure))
    assert not fake_azure.calls("PUT", "/deployments/")


def test_a_failed_deployment_is_deleted_and_stops_the_run(
    run_kedro, review_splits, fake_azure
):
    fake_azure.deployment_outcome = "Failed"
    with pytest.raises(Exception, match="not available in this region"):
        run_azure(run_kedro, azure_params(fake_azure))
    assert fake_azure.deleted_deployments == ["imdb-sentiment-ft"]
    assert not fake_azure.calls("POST", "/chat/completions")


def test_429_and_500_on_the_way_are_retried(
    run_kedro, review_splits, fake_azure, tmp_path
):
    fake_azure.fail_next("POST", r"^/openai/files$", 429, {"Retry-After": "0"})
    fake_azure.fail_next("POST", r"/chat/completions$", 500, times=2)
    fake_azure.fail_next("GET", r"/deployments/imdb-sentiment-ft$", 503)
    run_azure(run_kedro, azure_params(fake_azure))
    metrics = read_json(tmp_path, f"{REPORTING}/azure_openai_metrics.json")
    assert metrics["n_examples"] == 12


def test_dry_run_writes_and_validates_the_files_and_request_without_calling_azure(
    run_kedro, review_splits, tmp_path, monkeypatch
):
    for variable in ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY"):
        monkeypatch.delenv(variable, raising=False)
    record = tmp_path / "data/06_models/azure_openai/job_record.json"
    record.parent.mkdir(parents=True)
    record.write_text('{"job_id": "ftjob-0007", "status": "running"}')
    run_azure(run_kedro, pipeline="deployment_azure_openai_dry_run")
    folder = tmp_path / "data/05_model_input/azure_openai"
    lines = (folder / "validation.jsonl").read_text("utf-8").splitlines()
    assert (
        len(lines) == 10
        and json.loads(lines[0])["messages"][2]["content"] in LABEL_NAMES
    )
    request = json.loads((folder / "job_request.json").read_text())
    assert request == {
        "model": "gpt-4o-mini-2024-07-18",
        "hyperparameters": {"n_epochs": 2},
        "seed": 42,
        "suffix": "imdb-sentiment",
    }
    report = read_json(tmp_path, f"{REPORTING}/azure_openai_validation_report.json")
    counts = report["files"]["train.jsonl"]["label_counts"]
    assert sum(counts.values()) == 20 and min(counts.values()) >= 8  # stratified
    assert report["estimate"]["trained_tokens"] > 0
    # Nothing after the request ran: the last real job stays recorded for a real run.
    assert json.loads(record.read_text())["job_id"] == "ftjob-0007"
    assert not (tmp_path / "data/06_models/azure_openai/fine_tuning_job.json").exists()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert "deployment.azure_openai.estimated_training_cost_usd" in run.data.metrics


def test_each_target_needs_only_its_own_inputs():
    from kedro.framework.project import configure_project, pipelines

    from llm_finetuning.pipelines.model_comparison.pipeline import OPTIONAL_INPUTS

    configure_project(
        "llm_finetuning"
    )  # forgets the pipelines an earlier run asked for

    def required(name: str) -> set[str]:
        # The model comparison each target ends with reads every model's predictions
        # as OptionalDatasets (None when that model has not run): not needed.
        return pipelines[name].inputs() - OPTIONAL_INPUTS

    azure = required("deployment_azure_openai")
    assert {
        "train_reviews",
        "validation_reviews",
        "test_reviews",
        "label_names",
    } <= azure
    assert not azure & {"fine_tuned_model", "test_predictions"}
    mlflow_inputs = required("deployment_mlflow")
    assert "fine_tuned_model" in mlflow_inputs
    assert "test_predictions" in pipelines["deployment_mlflow"].inputs()
    assert not any(name.startswith("azure_openai") for name in mlflow_inputs)
    both = pipelines["deployment_mlflow"] + pipelines["deployment_azure_openai"]
    assert {n.name for n in pipelines["deployment"].nodes} == {
        n.name for n in both.nodes
    }
    # The default runs offline: the MLflow target and the Azure dry run. Nodes carry
    # the registry's group namespace (pipeline_registry.grouped).
    default = {node.name for node in pipelines["__default__"].nodes}
    assert "deployment.build_fine_tuning_request" in default
    assert "deployment.register_mlflow_model" in default
    assert "deployment.submit_fine_tuning_job" not in default
    # Nor does it need a Databricks workspace (the model comparison, in both, does not).
    databricks = {n.name for n in pipelines["deployment_databricks_serving"].nodes}
    assert databricks & default == {"evaluation.compare_models"}
    # Every target, and the evaluation, ends with the one model comparison.
    for name in ("evaluation", "deployment_mlflow", "deployment_azure_openai"):
        assert "evaluation.compare_models" in {n.name for n in pipelines[name].nodes}
    # Deployed models are scored by the evaluation's scoring pipeline, namespaced.
    assert "deployment.azure_openai.score_test_predictions" in {
        n.name for n in pipelines["deployment_azure_openai"].nodes
    }


def test_the_real_target_without_credentials_names_what_to_set(
    run_kedro, review_splits, monkeypatch
):
    for variable in ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY"):
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(ValueError, match="AZURE_OPENAI_ENDPOINT.*dry_run"):
        run_azure(run_kedro)


def test_base_and_demo_parameters_parse(project_root):
    """Every env's deployment blocks build the typed parameters (no unknown keys)."""
    from kedro.config import OmegaConfigLoader

    from llm_finetuning.pipelines.deployment.azure_openai.settings import (
        AzureOpenAIParams,
    )
    from llm_finetuning.pipelines.deployment.mlflow_serving import MlflowTargetParams
    from llm_finetuning.settings import CONFIG_LOADER_ARGS

    for env in ("base", "demo", "test", "databricks"):
        loader = OmegaConfigLoader(
            str(project_root / "conf"), **{**CONFIG_LOADER_ARGS, "default_run_env": env}
        )
        block = loader["parameters"]["deployment"]
        assert AzureOpenAIParams.model_validate(block["azure_openai"]).examples.test > 0
        assert (
            MlflowTargetParams.model_validate(block["mlflow"]).serve.host == "127.0.0.1"
        )


@pytest.mark.slow
def test_mlflow_target_registers_serves_and_checks_the_model(run_kedro, tmp_path):
    """Three pipelines and target A in the test env; served must equal offline."""
    run_kedro(
        env="test",
        pipeline_names=[
            "data_processing",
            "training",
            "evaluation",
            "deployment_mlflow",
        ],
    )
    registered = read_json(
        tmp_path, "data/06_models/deployment/mlflow_registered_model.json"
    )
    assert registered["model_uri"] == "models:/llm_finetuning_text_classifier/1"
    assert any(r.startswith("torch==") for r in registered["pip_requirements"])
    assert not any(r.startswith("torchvision") for r in registered["pip_requirements"])

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    version = client.get_model_version("llm_finetuning_text_classifier", "1")
    assert version.run_id == registered["run_id"]
    model = mlflow.models.get_model_info(registered["model_uri"])
    assert [c["name"] for c in model.signature.inputs.to_dict()] == ["text"]
    assert {c["name"] for c in model.signature.outputs.to_dict()} == {
        "predicted_label",
        "label_name",
        "prob_negative",
        "prob_positive",
    }

    report = read_json(tmp_path, f"{REPORTING}/mlflow_serving_report.json")
    assert report["n_reviews"] == 12 and report["n_requests"] == 12
    assert 0 < report["latency_ms_p50"] <= report["latency_ms_p95"]
    assert report["throughput_reviews_per_s"] > 0
    assert all(m["rejected_with_4xx"] for m in report["malformed_requests"])
    assert report["server_exit_code"] is not None  # stopped

    agreement = read_json(tmp_path, f"{REPORTING}/mlflow_served_vs_offline.json")
    assert agreement["served_equals_offline"] and agreement["n_compared"] == 12
    served = pd.read_parquet(
        tmp_path / "data/07_model_output/deployment/mlflow_served_predictions.parquet"
    )
    offline = pd.read_parquet(
        tmp_path / "data/07_model_output/test_predictions.parquet"
    )
    joined = served.merge(offline, on="row_id", suffixes=("", "_offline"))
    assert (joined["predicted_label"] == joined["predicted_label_offline"]).all()
    metrics = read_json(tmp_path, f"{REPORTING}/mlflow_served_metrics.json")
    assert metrics["n_examples"] == 12 and "roc_auc" in metrics["metrics"]
    cleanup = read_json(tmp_path, f"{REPORTING}/mlflow_cleanup_report.json")
    assert cleanup["port_closed"] and cleanup["server_stopped"]

    # One comparison of every model on the rows the served model answered.
    comparison = read_json(tmp_path, "data/08_reporting/model_comparison.json")
    models = comparison["models"]
    assert list(models) == [
        "fine_tuned",
        "majority_class",
        "tfidf_logreg",
        "mlflow_serving",
    ]
    assert comparison["n_common_rows"] == 12
    assert {m["n_rows"] for m in models.values()} == {12}
    assert set(comparison["limited_to_common_rows"]) == {
        "fine_tuned",
        "majority_class",
        "tfidf_logreg",
    }
    # served == offline, so the served model's figures are the fine-tuned model's
    assert models["mlflow_serving"]["accuracy"] == models["fine_tuned"]["accuracy"]
    assert models["mlflow_serving"]["reference_minus_model"]["accuracy"] == {
        "value": 0.0,
        "ci_low": 0.0,
        "ci_high": 0.0,
    }
    assert (
        models["mlflow_serving"]["latency_ms_per_prediction"]
        == (report["latency_ms_p50"])
    )
    assert models["fine_tuned"]["training_cost"]["seconds"] > 0
    assert "azure_openai" in comparison["not_compared"]

    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert "model_comparison.mlflow_serving.accuracy" in run.data.metrics
    assert "deployment.mlflow.serving.latency_ms_p95" in run.data.metrics
    assert "deployment.mlflow.test.accuracy" in run.data.metrics
    assert (tmp_path / REPORTING / "mlflow_serving/confusion_matrix.png").is_file()
    # Target B did not run at all.
    assert not (tmp_path / "data/05_model_input/azure_openai").exists()
