"""The typed ``training`` block: every env's file parses, mistakes are named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llm_finetuning.pipelines.training.config import TrainingConfig

CONF = Path(__file__).resolve().parents[3] / "conf"


@pytest.mark.parametrize("env", ["base", "demo", "test", "reference_lab", "databricks"])
def test_every_env_file_is_a_valid_training_block(env):
    block = yaml.safe_load((CONF / env / "parameters_training.yml").read_text())[
        "training"
    ]
    config = TrainingConfig.from_params(block)
    # Each file repeats the whole block (Kedro replaces top-level keys per env).
    assert set(block) == set(config.to_dict())


def test_reference_lab_holds_the_lab_recipe():
    block = yaml.safe_load(
        (CONF / "reference_lab" / "parameters_training.yml").read_text()
    )
    config = TrainingConfig.from_params(block["training"])
    assert (
        config.learning_rate,
        config.epochs,
        config.weight_decay,
        config.batch_size,
    ) == (
        2e-5,
        3,
        0.01,
        2,
    )


def test_unknown_and_bad_values_are_named():
    with pytest.raises(
        ValueError, match=r"Unknown key\(s\) \['learning_rte'\] in the 'training'"
    ):
        TrainingConfig.from_params({"learning_rte": 1e-3})
    with pytest.raises(
        ValueError, match=r"\['every_n_step'\] in the 'training.checkpoints'"
    ):
        TrainingConfig.from_params({"checkpoints": {"every_n_step": 5}})
    with pytest.raises(ValueError, match="training.precision must be one of"):
        TrainingConfig.from_params({"precision": "fp8"})
    with pytest.raises(ValueError, match="strategy 'steps' needs steps"):
        TrainingConfig.from_params({"evaluation": {"strategy": "steps"}})
    with pytest.raises(ValueError, match="training.batch_size must be >= 1"):
        TrainingConfig.from_params({"batch_size": 0})


def test_defaults_fill_missing_keys():
    config = TrainingConfig.from_params({"lora": {"enabled": True}})
    assert config.lora.enabled and config.lora.r == 8
    assert config.evaluation.strategy == "epoch"
    assert config.checkpoints.resume == "auto"
    assert config.distributed.strategy == "none"


def test_distributed_block_is_checked_by_the_launcher_config():
    config = TrainingConfig.from_params(
        {"distributed": {"strategy": "torchrun", "num_processes": 2}}
    )
    assert config.distributed.num_processes == 2
    with pytest.raises(
        ValueError, match="training.distributed.strategy must be one of"
    ):
        TrainingConfig.from_params({"distributed": {"strategy": "mpi"}})
