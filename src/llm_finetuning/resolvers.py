"""OmegaConf resolvers available in every configuration file."""

from importlib.resources import files


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
