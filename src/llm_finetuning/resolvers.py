"""OmegaConf resolvers available in every configuration file.

:func:`register_resolvers` registers them through OmegaConf's current API
(``register_resolver``); settings.py calls it when Kedro reads the settings, before any
configuration is loaded. Kedro's ``custom_resolvers`` setting would register them with
the deprecated ``register_new_resolver`` (one warning per resolver); it skips a name
that is registered already.
"""

from collections.abc import Callable
from importlib.resources import files
from typing import Any

from omegaconf import OmegaConf


def package_path(relative: str) -> str:
    """Absolute path of a file shipped inside the ``llm_finetuning`` package.

    The offline demo corpus and tokenizer ship in the wheel, so the ``demo`` catalog
    finds them the same way from a source checkout and from an installed wheel:
    ``filepath: ${package_path:demo_data/train.jsonl}``.
    """
    path = files("llm_finetuning").joinpath(relative)
    if not path.is_file() and not path.is_dir():
        raise FileNotFoundError(
            f"{relative!r} is not shipped in the llm_finetuning package"
        )
    return str(path)


def path_in(root: str | None, relative: str) -> str:
    """``relative`` inside the folder ``root``, or ``relative`` itself without a root.

    The catalog's data folder: ``${path_in:${globals:volume_root},data}`` is ``data``
    (relative to the project) where ``volume_root`` is null (conf/base/globals.yml) and
    ``/Volumes/<catalog>/<schema>/<volume>/data`` on Databricks.
    """
    if not root:
        return relative
    return f"{str(root).rstrip('/')}/{relative}"


RESOLVERS: dict[str, Callable[..., Any]] = {
    "package_path": package_path,
    "path_in": path_in,
}


def register_resolvers() -> None:
    """Register :data:`RESOLVERS` with OmegaConf (again, if they are already)."""
    for name, resolver in RESOLVERS.items():
        OmegaConf.register_resolver(name, resolver, replace=True)
