"""Project settings: configuration loader, resolvers and hooks.

kedro-mlflow registers its hooks through its entry point, so none are listed here.
"""

from llm_finetuning.resolvers import package_path

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "custom_resolvers": {"package_path": package_path},
}
