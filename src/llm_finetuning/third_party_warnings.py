"""Library warnings a user of this project cannot act on, silenced one by one.

Each filter names the warning's text and the module that emits it, so the same
warning from this project's code (or a new one from the library) still shows.

Not silenced, because no project code runs before it: MLflow's "Add type hints to the
`predict` method", emitted when the ``kedro`` CLI loads kedro-mlflow's commands (its
``KedroPipelineModel`` has none). Call
:func:`silence_known_noise` once, early (settings.py does, as every ``kedro`` command
reads the settings first).
"""

from __future__ import annotations

import warnings

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


def silence_known_noise() -> None:
    """Install the :data:`KNOWN_NOISE` filters (idempotent: ``warnings`` dedupes)."""
    for message, module, category, _why in KNOWN_NOISE:
        warnings.filterwarnings(
            "ignore", message=message, category=category, module=module
        )
