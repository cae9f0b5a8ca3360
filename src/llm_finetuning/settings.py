"""Project settings: configuration loader, resolvers and hooks.

kedro-mlflow registers its own hooks through its entry point; the project's hooks
(:mod:`llm_finetuning.hooks`) end training and MLflow runs whatever way a run ends.
"""

from llm_finetuning.hooks import CheckpointHooks, RunEndingHooks
from llm_finetuning.resolvers import package_path

HOOKS = (CheckpointHooks(), RunEndingHooks())

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "custom_resolvers": {"package_path": package_path},
}
