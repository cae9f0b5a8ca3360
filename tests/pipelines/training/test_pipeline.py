"""The training pipeline run by Kedro after data_processing, and its MLflow run."""

from __future__ import annotations

import json

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

from llm_finetuning.datasets import TextClassifierDataset


@pytest.mark.slow
def test_training_after_data_processing_saves_the_model_and_tracks_the_run(
    run_kedro, tmp_path
):
    # A parameter longer than MLflow's limit (6,000 characters) must not break
    # tracking; LoRA is off in the test env, so this list only travels to MLflow.
    long_list = [f"layer_{i}.attention.projection" for i in range(300)]
    run_kedro(
        env="test",
        pipeline_names=["data_processing", "training"],
        runtime_params={"training": {"lora": {"target_modules": long_list}}},
    )

    model_dir = tmp_path / "data" / "06_models" / "fine_tuned_model"
    classifier = TextClassifierDataset(path=str(model_dir)).load()
    assert classifier.label_names == ["negative", "positive"]
    assert classifier.metadata["data"] == {"train": 64, "validation": 16}
    metrics = json.loads(
        (tmp_path / "data/08_reporting/training_metrics.json").read_text()
    )
    assert metrics["global_step"] == 8
    assert (tmp_path / "data/08_reporting/training_curve.png").stat().st_size > 10_000

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["training.learning_rate"] == "0.002"
    assert params["training.batch_size"] == "8"
    assert params["fit.device"] == "cpu"
    assert params["fit.trainable_parameters"] == str(metrics["trainable_parameters"])
    assert (
        len(params["training.lora.target_modules"]) == MAX_PARAM_VAL_LENGTH
    )  # truncated
    assert str(long_list).startswith(params["training.lora.target_modules"])

    client = MlflowClient()
    losses = client.get_metric_history(run.info.run_id, "loss")
    assert sorted(m.step for m in losses) == list(range(1, 9))
    eval_losses = client.get_metric_history(run.info.run_id, "eval_loss")
    assert sorted(m.step for m in eval_losses) == [4, 8]
    assert run.data.metrics["throughput.samples_per_second"] > 0
    assert 0 < run.data.metrics["throughput.mfu"] < 1

    def artifacts(path: str | None = None) -> set[str]:
        return {f.path for f in client.list_artifacts(run.info.run_id, path)}

    assert {"fine_tuned_model", "reporting"} <= artifacts()
    assert {
        "fine_tuned_model/model.safetensors",
        "fine_tuned_model/config.json",
    } <= artifacts("fine_tuned_model")
    assert artifacts("reporting") == {
        "reporting/training_curve.png",
        "reporting/training_metrics.json",
    }
