"""The shared parameter schema: full-path errors, every env's merged blocks, defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from llm_finetuning.models import ModelParams
from llm_finetuning.params import (
    Params,
    ParamsError,
    ParamsTrackingHooks,
    RuntimeParams,
    flatten,
)
from llm_finetuning.pipelines.data_processing.params import DataProcessingParams
from llm_finetuning.pipelines.evaluation.params import EvaluationParams
from llm_finetuning.pipelines.training.params import TrainingParams

CONF = Path(__file__).resolve().parents[1] / "conf"
ENVS = ["base", "demo", "test", "reference_lab", "databricks", "small_data"]
BLOCKS: dict[str, type[Params]] = {
    "model": ModelParams,
    "runtime": RuntimeParams,
    "data_processing": DataProcessingParams,
    "training": TrainingParams,
    "evaluation": EvaluationParams,
}
# What conf/base chooses beyond the models' defaults: the IMDB source's class names.
FILES = {
    "parameters",
    "parameters_data_processing",
    "parameters_training",
    "parameters_evaluation",
}
BASE_CHOICES = {"data_processing.source.label_names": ["neg", "pos"]}


def _parameters(env: str) -> dict[str, Any]:
    from kedro.config import OmegaConfigLoader

    from llm_finetuning.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(conf_source=str(CONF), env=env, **CONFIG_LOADER_ARGS)
    return loader["parameters"]


@pytest.mark.parametrize("env", ENVS)
def test_every_env_passes_every_block_model(env):
    parameters = _parameters(env)
    for name, model in BLOCKS.items():
        model.model_validate(parameters[name])


def test_base_spells_out_the_model_defaults():
    """conf/base and the models cannot drift: every value base sets is the default."""
    parameters = _parameters("base")
    minimal = {"data_processing": {"source": {"label_names": ["neg", "pos"]}}}
    for name, model in BLOCKS.items():
        written = flatten(parameters[name], f"{name}.")
        default = model.model_validate(minimal.get(name, {}))
        defaults = flatten(default.to_dict(), f"{name}.")
        assert set(written) == set(defaults), name
        for key, value in written.items():
            assert value == BASE_CHOICES.get(key, defaults[key]), key


def test_env_files_hold_only_what_differs_from_base():
    base = {
        name: flatten(block, f"{name}.")
        for name, block in _parameters("base").items()
        if name in BLOCKS
    }
    for env in ENVS[1:]:
        for path in (CONF / env).glob("parameters*.yml"):
            if path.stem not in FILES:
                continue
            written = yaml.safe_load(path.read_text()) or {}
            for name, block in written.items():
                flat = flatten(block, f"{name}.")
                same = [k for k, v in flat.items() if base[name].get(k) == v]
                assert not same, f"{path}: {same} repeat base"


def test_errors_name_the_full_path_and_the_allowed_keys():
    with pytest.raises(ParamsError) as error:
        TrainingParams.model_validate({"evaluation": {"stratgy": "epoch"}})
    assert str(error.value) == (
        "training.evaluation.stratgy: unknown key; allowed keys: batch_size, "
        "early_stopping_patience, early_stopping_threshold, metric, steps, strategy"
    )
    with pytest.raises(ParamsError, match=r"^runtime\.seed: Input should be a valid"):
        RuntimeParams.model_validate({"seed": "x"})
    with pytest.raises(ParamsError, match=r"^model: source 'config' needs"):
        ModelParams.model_validate({"source": "config"})


def test_kedro_validates_typed_node_inputs_before_any_node_runs():
    from kedro.validation import ParameterValidationError, ParameterValidator

    from llm_finetuning.pipelines.data_processing.pipeline import (
        create_pipeline as data_processing,
    )
    from llm_finetuning.pipelines.training.pipeline import create_pipeline as training

    parameters = _parameters("test")
    validator = ParameterValidator(
        {"data_processing": data_processing(), "training": training()}
    )
    typed = validator.validate_raw_params(parameters)
    assert isinstance(typed["training"], TrainingParams)
    assert isinstance(typed["data_processing"]["sampling"], Params)
    parameters["training"]["evaluation"]["strategy"] = "epochs"
    with pytest.raises(
        ParameterValidationError, match=r"training\.evaluation\.strategy: Input"
    ):
        validator.validate_raw_params(parameters)


def test_none_and_a_model_pass_through():
    assert RuntimeParams.model_validate(None) == RuntimeParams()
    runtime = RuntimeParams(seed=3)
    assert RuntimeParams.model_validate(runtime) is runtime
    assert runtime.to_dict() == {"seed": 3, "num_threads": None}


def test_flatten_keeps_empty_mappings():
    assert flatten({"a": {"b": 1, "c": {}}, "d": [1]}, "p.") == {
        "p.a.b": 1,
        "p.a.c": {},
        "p.d": [1],
    }


def test_tracking_hook_logs_typed_blocks_flattened(tmp_path, monkeypatch):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    hook = ParamsTrackingHooks()
    inputs = {"params:runtime": RuntimeParams(seed=7), "params:runtime.seed": 7}
    hook.before_node_run(node=None, inputs=inputs)  # no active run: nothing logged
    with mlflow.start_run() as run:
        hook.before_node_run(node=None, inputs=inputs)
    params = mlflow.get_run(run.info.run_id).data.params
    assert params == {"runtime.seed": "7", "runtime.num_threads": "None"}
