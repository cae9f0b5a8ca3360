"""Library warnings a user of this project cannot act on, silenced one by one.

Each filter names the warning's text and the module that emits it, so the same
warning from this project's code (or a new one from the library) still shows.

Call :func:`silence_known_noise` once, early (settings.py does, as every ``kedro``
command reads the settings first). MLflow's "Add type hints to the `predict` method"
comes earlier still, when the ``kedro`` CLI loads kedro-mlflow's commands, and is
dropped by :func:`quiet_cli_start`, a ``kedro.init`` entry point (pyproject.toml),
which the CLI calls before anything else.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from llm_finetuning.console import ANSI_CODE

# (message regex, module regex of the code that triggers the warning, category, why)
KNOWN_NOISE: tuple[tuple[str, str, type[Warning], str], ...] = (
    (
        r"register_new_resolver\(\) is deprecated",
        r"kedro\.config\.omegaconf_config",
        # Kedro 1.7 registers its own ``globals`` and ``runtime_params`` resolvers with
        # OmegaConf's deprecated API on every config loader it creates. The project's
        # resolvers use the current API (llm_finetuning.resolvers).
        UserWarning,
        "Kedro's own resolvers",
    ),
    (
        r"register_new_resolver\(\) is deprecated",
        r"kedro_mlflow\.framework\.hooks\.mlflow_hook",
        # kedro-mlflow 2.0.3 registers its ``km.random_name`` resolver the same way.
        UserWarning,
        "kedro-mlflow's resolver",
    ),
    (
        r"`is_gradient_checkpointing` is deprecated",
        r"transformers\.modeling_utils",
        # peft 0.21's PeftModel reads the deprecated property of the model it wraps
        # (training.lora, get_peft_model); the project never calls it.
        FutureWarning,
        "peft's LoRA wrapper",
    ),
)


MISSING_TYPE_HINTS = "Add type hints to the `predict` method"


def silence_known_noise() -> None:
    """Install the :data:`KNOWN_NOISE` filters (idempotent: ``warnings`` dedupes)."""
    for message, module, category, _why in KNOWN_NOISE:
        warnings.filterwarnings(
            "ignore", message=message, category=category, module=module
        )


def quiet_cli_start() -> None:
    """Install the filters, then load kedro-mlflow's model class without its warning.

    kedro-mlflow 2.0.3's ``KedroPipelineModel`` is an MLflow ``PythonModel`` whose
    ``predict`` has no type hints, so defining it makes MLflow warn "Add type hints to
    the `predict` method"; the ``kedro`` CLI defines it when it loads kedro-mlflow's
    commands, before any project code runs. MLflow shows that warning through its own
    ``simplefilter("once")``, which outranks any filter, so the class is imported here
    first with that one message dropped where warnings are shown, and the message is
    then taken off the "once" registry: the same warning for any other model class
    (this project's included) still shows. Registered as a ``kedro.init`` entry point,
    which ``kedro``'s CLI calls first of all.
    """
    silence_known_noise()
    with warnings.catch_warnings():
        warnings.showwarning = _without_missing_type_hints(warnings.showwarning)
        try:
            import kedro_mlflow.mlflow  # noqa: F401
        except Exception:  # noqa: BLE001 - the plugin's own loading reports it
            pass
        finally:
            for key in [k for k in warnings.onceregistry if _is_missing_hints(k[0])]:
                del warnings.onceregistry[key]


def _is_missing_hints(message: object) -> bool:
    # MLflow colours the message: it starts with an ANSI colour code.
    return ANSI_CODE.sub("", str(message)).startswith(MISSING_TYPE_HINTS)


def _without_missing_type_hints(show: Callable[..., None]) -> Callable[..., None]:
    def show_the_others(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
        if not _is_missing_hints(message):
            show(message, category, *args, **kwargs)

    return show_the_others
