"""Scoring with a registered MLflow model by alias (the deployment's pyfunc)."""

from __future__ import annotations

import mlflow
import numpy as np
import pyarrow as pa
import pytest

from llm_finetuning.datasets import ChunkStoreDataset, TextSourceDataset
from llm_finetuning.pipelines.scoring.nodes import score_texts
from llm_finetuning.pipelines.scoring.params import ScoringParams
from tests.pipelines.scoring.conftest import MAX_LENGTH, model_params, write_parquet


@pytest.mark.slow
def test_a_registered_alias_scores_like_the_model_folder(
    tmp_path, model_folder, classifier, monkeypatch
):
    from llm_finetuning.pipelines.deployment.mlflow_serving import SERVING_MODEL_CODE

    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(SERVING_MODEL_CODE),
            artifacts={"model": str(model_folder)},
            model_config={"max_length": MAX_LENGTH},
            pip_requirements=["mlflow", "torch", "transformers"],
            registered_model_name="scoring_test_model",
        )
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(
        "scoring_test_model", "champion", info.registered_model_version
    )
    path = write_parquet(
        tmp_path / "in.parquet", {"text": ["a lovely film", "dull and long", None]}
    )

    def score(model):
        params = ScoringParams(model=model, progress_bar=False, chunk_size=2)
        source = TextSourceDataset(path=str(path)).load()
        store = ChunkStoreDataset(path=str(tmp_path / f"partial-{len(model)}")).load()
        chunks, report = score_texts(source, classifier, store, params, model_params())
        return pa.concat_tables(list(chunks)).to_pandas(), report

    registered, report = score("models:/scoring_test_model@champion")
    local, _ = score("fine_tuned_model")

    version = info.registered_model_version
    assert report["model"] == f"models:/scoring_test_model/{version}"
    assert (registered["model_version"] == report["model"]).all()
    np.testing.assert_allclose(
        registered[["prob_negative", "prob_positive"]].to_numpy(float),
        local[["prob_negative", "prob_positive"]].to_numpy(float),
        atol=1e-6,
    )
    assert registered["invalid_reason"].tolist()[2] == "null"
