"""One parameter schema: the base class of every typed parameter block.

Each block of ``conf/<env>/parameters*.yml`` is a :class:`Params` model (pydantic v2,
unknown keys forbidden, frozen) beside the pipeline that reads it. Node functions take
the model (``training: TrainingParams``), so Kedro validates every block a run needs
before any node runs and passes the model in; a function also called with a plain dict
(``fit`` in a torch.distributed worker, a test) runs ``Model.model_validate(value)``,
which returns a model unchanged. The field defaults are the project's defaults: an env
file, or ``conf/base``, only has to name what differs.

Errors name the full key path (``training.evaluation.strategy``) and, for an unknown
key, the allowed ones. This module imports nothing heavy: ``settings`` reads it.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, get_args

from kedro.framework.hooks import hook_impl
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

__all__ = [
    "Params",
    "ParamsError",
    "ParamsTrackingHooks",
    "RuntimeParams",
    "count_or",
    "flatten",
]

logger = logging.getLogger(__name__)
# MLflow's limit on a parameter value; longer ones are truncated, as kedro-mlflow's
# `long_params_strategy: truncate` (conf/base/mlflow.yml) does.
_MAX_PARAM_LENGTH = 6000


class ParamsError(ValueError):
    """A parameter block that does not fit its model; one line per problem."""


class Params(BaseModel):
    """A typed parameter block. Subclasses set ``key``, the block's path in the config.

    Construct from configuration with :meth:`model_validate`: that is where errors get
    their full key path. Keyword construction (``LoraParams(r=4)``) validates the same
    way and raises pydantic's own error.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: ClassVar[str] = ""

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Any:
        """Validate ``obj`` (a mapping or an instance); errors name the full key path."""
        if isinstance(obj, cls):
            return obj
        try:
            return super().model_validate({} if obj is None else obj, **kwargs)
        except ValidationError as error:
            raise ParamsError(_describe(cls, error)) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON-ready): metadata, fingerprints, MLflow."""
        return self.model_dump(mode="json")


class RuntimeParams(Params):
    """``runtime`` (parameters.yml): what every pipeline's randomness and CPU use share.

    Attributes:
        seed: Seeds sampling, model initialisation, batching and the bootstrap.
        num_threads: torch CPU threads; ``null`` keeps torch's default.
    """

    key: ClassVar[str] = "runtime"

    seed: int = 42
    num_threads: int | None = None


def count_or(word: str | None = None, *, minimum: int = 0) -> Any:
    """A before-validator: an integer >= ``minimum``, or ``word`` (``all``, ``auto``)."""
    allowed = f"a count >= {minimum}" + (f" or {word!r}" if word else "")

    def check(value: Any) -> Any:
        if word is not None and value == word:
            return value
        if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
            return value
        raise ValueError(f"must be {allowed}, not {_shown(value)}")

    return BeforeValidator(check)


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (empty mappings are kept as values)."""
    flat: dict[str, Any] = {}
    for name, value in values.items():
        path = f"{prefix}{name}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


class ParamsTrackingHooks:
    """Log the typed parameter blocks a node takes to the MLflow run, one key per value.

    kedro-mlflow flattens only dict inputs (``training.learning_rate``); a typed block
    reaches it as one object. This logs the block's values under the same flattened
    names, so runs stay comparable by ``params.training.learning_rate``.
    """

    @hook_impl
    def before_node_run(self, node: Any, inputs: dict[str, Any]) -> None:
        blocks = {
            name.removeprefix("params:"): value
            for name, value in inputs.items()
            if name.startswith("params:") and isinstance(value, Params)
        }
        if not blocks:
            return
        import mlflow

        if mlflow.active_run() is None:
            return
        values: dict[str, str] = {}
        for name, block in blocks.items():
            for key, value in flatten(block.to_dict(), f"{name}.").items():
                values[key] = str(value)[:_MAX_PARAM_LENGTH]
        try:
            mlflow.log_params(values)
        except Exception as error:  # tracking must never stop a run
            logger.warning("Could not log parameters to MLflow: %s", error)


def _describe(model: type[Params], error: ValidationError) -> str:
    problems: dict[str, list[str]] = {}
    for item in error.errors(include_url=False):
        location, allowed = _located(model, item["loc"])
        where = ".".join(part for part in [model.key, *location] if part)
        where = where or model.__name__
        if item["type"] == "extra_forbidden":
            message = "unknown key" + (
                f"; allowed keys: {', '.join(allowed)}" if allowed else ""
            )
        else:
            message = item["msg"].removeprefix("Value error, ")
            if item["type"] != "value_error":
                message = f"{message}, not {_shown(item.get('input'))}"
        problems.setdefault(where, [])
        if message not in problems[where]:
            problems[where].append(message)
    return "; ".join(
        f"{where}: {' or '.join(messages)}" for where, messages in problems.items()
    )


def _located(
    model: type[Params], location: tuple[Any, ...]
) -> tuple[list[str], list[str]]:
    """The key path of an error (pydantic's union branch tags left out) and the
    field names of the block holding its last key."""
    current: Any = model
    path: list[str] = []
    allowed: list[str] = []
    for index, part in enumerate(location):
        if not _is_model(current):
            path.append(str(part))
            continue
        allowed = sorted(current.model_fields)
        field = current.model_fields.get(part) if isinstance(part, str) else None
        if field is not None:
            path.append(part)
            current = _model_in(field.annotation)
        elif index == len(location) - 1:
            path.append(str(part))  # an unknown key
        # else: a union branch tag such as "int" or "literal['all']"
    return path, allowed


def _model_in(annotation: Any) -> Any:
    """The pydantic model in ``annotation`` (``X``, ``X | None``), else ``None``."""
    if _is_model(annotation):
        return annotation
    for argument in get_args(annotation):
        if _is_model(argument):
            return argument
    return None


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
