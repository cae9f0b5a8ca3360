"""The typed ``training`` block: every env's file parses, mistakes are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_finetuning.pipelines.training.config import TrainingConfig

CONF = Path(__file__).resolve().parents[3] / "conf"


def _training_block(env: str) -> dict:
    from kedro.config import OmegaConfigLoader

    from llm_finetuning.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(conf_source=str(CONF), env=env, **CONFIG_LOADER_ARGS)
    return loader["parameters"]["training"]


@pytest.mark.parametrize("env", ["base", "demo", "test", "reference_lab", "databricks"])
def test_every_env_file_is_a_valid_training_block(env):
    block = _training_block(env)
    config = TrainingConfig.from_params(block)
    # An env file holds only what differs; merged into base, every key is there.
    assert set(block) == set(config.to_dict())


def test_reference_lab_holds_the_lab_recipe():
    config = TrainingConfig.from_params(_training_block("reference_lab"))
    assert (
        config.learning_rate,
        config.epochs,
        config.weight_decay,
        config.batch_size,
        config.warmup,
        config.group_by_length,
    ) == (2e-5, 3, 0.01, 2, 0, False)


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
