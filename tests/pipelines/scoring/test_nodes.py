"""The scoring node on the local engine: predictions, bad input, resume, parameters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llm_finetuning.datasets import (
    AtomicParquetDataset,
    ChunkStoreDataset,
    TextSourceDataset,
)
from llm_finetuning.datasets.scored_table import ScoringJob
from llm_finetuning.pipelines.evaluation.inference import predict_probabilities
from llm_finetuning.pipelines.scoring.nodes import score_texts
from llm_finetuning.pipelines.scoring.params import ScoringParams
from tests.pipelines.scoring.conftest import (
    LABEL_NAMES,
    MAX_LENGTH,
    model_params,
    write_parquet,
)

TEXTS = [
    "a lovely film",
    None,
    "",
    "   ",
    "word " * 300,  # longer than MAX_LENGTH tokens
    "dull and long",
    "a lovely film",
]


def _score(tmp_path, classifier, path, **params):
    params = ScoringParams(progress_bar=False, batch_size=3, chunk_size=3, **params)
    source = TextSourceDataset(path=str(path)).load()
    store = ChunkStoreDataset(path=str(tmp_path / "partial")).load()
    chunks, report = score_texts(source, classifier, store, params, model_params())
    output = AtomicParquetDataset(path=str(tmp_path / "scored.parquet"))
    output.save(chunks)
    return output.load(), report


def _reasons(scored: pd.DataFrame) -> list:
    return [None if pd.isna(v) else v for v in scored["invalid_reason"]]


def test_every_row_is_scored_or_explained(tmp_path, classifier):
    path = write_parquet(
        tmp_path / "in.parquet", {"text": TEXTS, "id": [10, 11, 12, 13, 14, 15, 10]}
    )
    scored, report = _score(tmp_path, classifier, path, id_column="id")

    assert scored["id"].tolist() == [10, 11, 12, 13, 14, 15, 10]  # input order
    assert list(scored.columns) == [
        "id",
        "predicted_label",
        "label_name",
        "prob_negative",
        "prob_positive",
        "model_version",
        "scored_at",
        "invalid_reason",
    ]
    assert _reasons(scored)[:5] == [None, "null", "empty", "empty", None]
    assert scored.loc[1:3, "predicted_label"].isna().all()
    valid = scored[scored["invalid_reason"].isna()]
    probabilities = valid[["prob_negative", "prob_positive"]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    assert (valid["predicted_label"] == probabilities.argmax(axis=1)).all()
    assert (
        valid["label_name"] == [LABEL_NAMES[i] for i in valid["predicted_label"]]
    ).all()
    assert scored["model_version"].str.startswith("model_folder:").all()
    assert report["rows"] == 7 and report["scored"] == 4
    assert report["invalid"] == {"empty": 2, "null": 1}
    assert report["truncated"] == 1
    assert report["duplicates"]["duplicated_ids"] == 1
    assert report["duplicates"]["examples"] == [{"id": 10, "rows": 2}]


def test_predictions_equal_each_text_scored_alone_truncated_like_training(
    tmp_path, classifier
):
    texts = [t for t in TEXTS if t and t.strip()]
    path = write_parquet(tmp_path / "in.parquet", {"text": texts})
    scored, _ = _score(tmp_path, classifier, path)

    assert scored["row_id"].tolist() == list(range(len(texts)))
    from datasets import Dataset

    for i, text in enumerate(texts):
        encoded = classifier.tokenizer([text], truncation=True, max_length=MAX_LENGTH)
        alone = predict_probabilities(
            classifier.model, classifier.tokenizer, Dataset.from_dict(dict(encoded))
        )[0]
        np.testing.assert_allclose(
            scored.loc[i, ["prob_negative", "prob_positive"]].to_numpy(float),
            alone,
            atol=1e-5,
        )


def test_non_string_texts_are_counted_not_fatal(tmp_path, classifier):
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "good", "id": "a"}\n{"text": 42, "id": "b"}\n')
    scored, report = _score(tmp_path, classifier, path, id_column="id")
    assert _reasons(scored) == [None, "not a string (int)"]
    assert report["invalid"] == {"not a string (int)": 1}


def test_missing_text_or_id_column_names_source_and_column(tmp_path, classifier):
    path = write_parquet(tmp_path / "in.parquet", {"body": ["x"], "id": [1]})
    with pytest.raises(ValueError, match=r"in\.parquet.*no column 'text'"):
        _score(tmp_path, classifier, path)
    path = write_parquet(tmp_path / "in2.parquet", {"text": ["x"]})
    with pytest.raises(ValueError, match=r"in2\.parquet.*no column 'ticket_id'"):
        _score(tmp_path, classifier, path, id_column="ticket_id")


def test_a_killed_run_resumes_after_its_last_chunk(tmp_path, classifier, monkeypatch):
    texts = [f"review number {i} " * (i % 5 + 1) for i in range(20)]
    path = write_parquet(tmp_path / "in.parquet", {"text": texts, "id": range(20)})
    reference, _ = _score(tmp_path / "reference", classifier, path, id_column="id")

    write = ScoringJob.write
    written: list[int] = []

    def write_then_die(self, index, table, stats):
        write(self, index, table, stats)
        written.append(index)
        if index == 2:
            raise KeyboardInterrupt  # stands in for a kill after chunk 2

    monkeypatch.setattr(ScoringJob, "write", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        _score(tmp_path / "resumed", classifier, path, id_column="id")
    assert written == [0, 1, 2]
    written.clear()
    resumed, report = _score(tmp_path / "resumed", classifier, path, id_column="id")

    assert written == [3, 4, 5, 6]  # chunks 0-2 were not scored again
    assert report["chunks_resumed"] == 3 and report["rows"] == 20
    pd.testing.assert_frame_equal(
        resumed.drop(columns="scored_at"), reference.drop(columns="scored_at")
    )
    assert not list((tmp_path / "resumed" / "partial").iterdir())  # cleared


def test_parameters_are_validated_by_kedro_before_the_run():
    from kedro.validation import ParameterValidationError, ParameterValidator

    from llm_finetuning.pipelines.scoring import create_pipeline

    validator = ParameterValidator({"scoring": create_pipeline()})
    params = validator.validate_raw_params(
        {"scoring": {"text_column": "body"}, "model": {"max_length": 8}}
    )
    assert isinstance(params["scoring"], ScoringParams)
    for bad in (
        {"text_colum": "body"},  # misspelt
        {"batch_size": 0},
        {"engine": "dask"},
        {"model": "my-model"},
    ):
        with pytest.raises(ParameterValidationError, match="scoring"):
            validator.validate_raw_params({"scoring": bad})
    with pytest.raises(Exception, match="frozen"):
        params["scoring"].batch_size = 2
    for uri in ("models:/clf@champion", "models:/clf/3", "runs:/abc/model"):
        assert ScoringParams(model=uri).model == uri


ENVS = ["base", "demo", "test", "databricks"]


def _parameters(env: str) -> dict:
    from pathlib import Path

    from kedro.config import OmegaConfigLoader

    from llm_finetuning.settings import CONFIG_LOADER_ARGS

    conf = Path(__file__).resolve().parents[3] / "conf"
    return OmegaConfigLoader(conf_source=str(conf), env=env, **CONFIG_LOADER_ARGS)[
        "parameters"
    ]


@pytest.mark.parametrize("env", ENVS)
def test_every_env_passes_the_scoring_model(env):
    ScoringParams.model_validate(_parameters(env)["scoring"])


def test_base_spells_out_the_scoring_defaults():
    from llm_finetuning.params import flatten

    written = flatten(_parameters("base")["scoring"], "scoring.")
    assert written == flatten(ScoringParams().to_dict(), "scoring.")


def test_texts_are_cut_by_model_truncation(tmp_path, classifier):
    from datasets import Dataset

    from llm_finetuning.truncation import encode_texts

    text = "a dull start " * 40 + "but a wonderful, moving ending " * 40
    path = write_parquet(tmp_path / "in.parquet", {"text": [text, "a lovely film"]})
    params = ScoringParams(progress_bar=False, batch_size=3, chunk_size=3)
    store = ChunkStoreDataset(path=str(tmp_path / "partial")).load()
    chunks, report = score_texts(
        TextSourceDataset(path=str(path)).load(),
        classifier,
        store,
        params,
        model_params(truncation="tail"),
    )
    output = AtomicParquetDataset(path=str(tmp_path / "scored.parquet"))
    output.save(chunks)
    scored = output.load()
    cut = encode_texts(classifier.tokenizer, [text], MAX_LENGTH, "tail")
    expected = predict_probabilities(
        classifier.model,
        classifier.tokenizer,
        Dataset.from_dict({"input_ids": cut.input_ids}),
    )
    np.testing.assert_allclose(
        scored.loc[[0], ["prob_negative", "prob_positive"]].to_numpy(),
        expected,
        atol=1e-5,
    )
    assert report["truncated"] == 1
    assert report["truncation"]["truncation"] == "tail"


def test_a_registered_model_is_scored_as_it_was_logged_to_cut(
    classifier, monkeypatch, caplog
):
    from llm_finetuning.datasets import TextClassifier
    from llm_finetuning.pipelines.scoring import engine
    from llm_finetuning.truncation import Truncation

    logged = Truncation(MAX_LENGTH, "head_tail", 8)
    served = TextClassifier(
        model=classifier.model,
        tokenizer=classifier.tokenizer,
        metadata={"uri": "models:/clf/1", "truncation": logged.as_config()},
    )
    monkeypatch.setattr(engine, "load_mlflow_classifier", lambda uri: served)
    params = ScoringParams(model="models:/clf/1")
    with caplog.at_level("WARNING"):
        model = engine.resolve_model(classifier, params, Truncation(MAX_LENGTH))
    assert model.truncation == logged
    assert "scoring it as it serves" in caplog.text
    # A model logged before truncation was configurable: the parameters decide.
    monkeypatch.setattr(
        engine,
        "load_mlflow_classifier",
        lambda uri: TextClassifier(
            classifier.model, classifier.tokenizer, {"uri": uri}
        ),
    )
    model = engine.resolve_model(classifier, params, Truncation(MAX_LENGTH, "tail"))
    assert model.truncation == Truncation(MAX_LENGTH, "tail")
