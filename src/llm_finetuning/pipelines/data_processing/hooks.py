"""Kedro hooks of the ``data_processing`` pipeline.

Register in ``settings.py``: ``HOOKS = (EncodingHintHooks(), ...)``.
"""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import DatasetError

from llm_finetuning.pipelines.data_processing.encoding import decoding_hint

logger = logging.getLogger(__name__)


def _encoding_option(dataset: Any) -> str:
    """Where the dataset type takes the encoding (pandas readers: ``load_args``)."""
    if hasattr(dataset, "_load_args"):
        return "load_args: {encoding: ...}"
    if hasattr(dataset, "_fs_open_args_load"):
        return "fs_args: {open_args_load: {encoding: ...}}"
    return "the dataset type's encoding option"


class _HintingLoad:
    """``catalog.load`` that adds the encoding hint to a decoding ``DatasetError``.

    A class rather than a closure so that a catalog carrying it still pickles (the
    ParallelRunner sends the catalog to its workers).
    """

    def __init__(self, catalog: Any, load: Any) -> None:
        self._catalog = catalog
        self._load = load

    def __call__(self, ds_name: str, version: str | None = None) -> Any:
        try:
            return self._load(ds_name, version)
        except DatasetError as exc:
            dataset = self._catalog.get(ds_name)
            hint = decoding_hint(
                exc,
                ds_name,
                getattr(dataset, "_filepath", None),
                _encoding_option(dataset),
            )
            if hint is None:
                raise
            # Same type as before, so the runner and callers handle it as they would;
            # only the message gains the sentence that says what to do.
            raise DatasetError(f"{exc}\n{hint}") from exc


class EncodingHintHooks:
    """Name the file and the ``encoding`` option when a dataset is not valid UTF-8.

    The runner loads a node's inputs with ``catalog.load`` before the node runs, so
    the node cannot add the hint; wrapping ``catalog.load`` once, right after the
    catalog is created, covers every entry (dataset factories included) without
    building the lazy datasets early or changing their types.
    """

    @hook_impl
    def after_catalog_created(self, catalog: Any) -> None:
        """Wrap ``catalog.load`` (once, even if the hook is registered twice)."""
        if isinstance(getattr(catalog, "load", None), _HintingLoad):
            return
        try:
            catalog.load = _HintingLoad(catalog, catalog.load)
        except AttributeError:  # a catalog class that forbids it: keep plain errors
            logger.debug("Catalog %s keeps its own load", type(catalog).__name__)
