"""The typed ``training`` block: every env parses, mistakes are named by full path."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from llm_finetuning.params import ParamsError
from llm_finetuning.pipelines.training.params import TrainingParams

CONF = Path(__file__).resolve().parents[3] / "conf"


def _training_block(env: str) -> dict:
    from kedro.config import OmegaConfigLoader

    from llm_finetuning.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(conf_source=str(CONF), env=env, **CONFIG_LOADER_ARGS)
    return loader["parameters"]["training"]


@pytest.mark.parametrize("env", ["base", "demo", "test", "reference_lab", "databricks"])
def test_every_env_file_is_a_valid_training_block(env):
    block = _training_block(env)
    TrainingParams.model_validate(block)
    # An env file holds only what differs; merged into base, every key is there.
    assert set(block) == set(TrainingParams.model_fields)


def test_reference_lab_holds_the_lab_recipe():
    config = TrainingParams.model_validate(_training_block("reference_lab"))
    assert (
        config.learning_rate,
        config.epochs,
        config.weight_decay,
        config.batch_size,
        config.warmup,
        config.group_by_length,
    ) == (2e-5, 3, 0.01, 2, 0, False)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            {"learning_rte": 1e-3},
            r"training\.learning_rte: unknown key; allowed keys: batch_size, .*"
            r"learning_rate",
        ),
        (
            {"checkpoints": {"every_n_step": 5}},
            r"training\.checkpoints\.every_n_step: unknown key; allowed keys: dir, "
            r"every_n_steps, keep_after_success, keep_last, resume",
        ),
        ({"precision": "fp8"}, r"training\.precision: Input should be 'auto', "),
        (
            {"evaluation": {"strategy": "step"}},
            r"training\.evaluation\.strategy: Input should be 'epoch', 'steps' or "
            r"'no', not 'step'",
        ),
        (
            {"evaluation": {"strategy": "steps"}},
            r"training\.evaluation: strategy 'steps' needs steps",
        ),
        ({"batch_size": 0}, r"training\.batch_size: Input should be greater than"),
        ({"epochs": 0}, r"training: epochs must be positive \(or set max_steps\)"),
    ],
)
def test_unknown_and_bad_values_are_named_by_their_full_path(block, message):
    with pytest.raises(ParamsError, match=message):
        TrainingParams.model_validate(block)


def test_a_typed_block_passes_through_unchanged():
    config = TrainingParams.model_validate({"batch_size": 4})
    assert TrainingParams.model_validate(config) is config
    with pytest.raises(ValidationError):  # frozen
        config.batch_size = 8  # type: ignore[misc]


def test_defaults_fill_missing_keys():
    config = TrainingParams.model_validate({"lora": {"enabled": True}})
    assert config.lora.enabled and config.lora.r == 8
    assert config.evaluation.strategy == "epoch"
    assert config.checkpoints.resume == "auto"
    assert config.distributed.strategy == "none"


def test_distributed_block_is_checked_by_the_launcher_config():
    config = TrainingParams.model_validate(
        {"distributed": {"strategy": "torchrun", "num_processes": 2}}
    )
    assert config.distributed.num_processes == 2
    with pytest.raises(
        ParamsError, match=r"training\.distributed\.strategy: Input should be 'none'"
    ):
        TrainingParams.model_validate({"distributed": {"strategy": "mpi"}})
