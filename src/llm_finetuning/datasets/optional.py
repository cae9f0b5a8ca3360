"""A dataset that may not have been written yet: it loads ``None`` instead of failing.

The model comparison (``pipelines/model_comparison``) reads every model's predictions,
but only the targets that have run wrote theirs, and Kedro has no optional inputs. So
those predictions frames are catalogued as ``OptionalDataset`` around their real
type: the pipeline that produces one saves it as before; a reader gets the data, or
``None`` when nothing was saved. Because the comparison names the datasets
themselves, Kedro builds it after whichever of them the run produces.

A loaded DataFrame carries its file and the time that file was last written in
``attrs["source"]``, so the report can show what came from an earlier run.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from kedro.io import AbstractDataset

logger = logging.getLogger(__name__)


class OptionalDataset(AbstractDataset[Any, Any]):
    """The wrapped dataset, loading ``None`` when it does not exist.

    Args:
        dataset: The wrapped dataset's configuration (``type``, ``filepath``, ...), as
            in the catalog.
        metadata: Ignored by Kedro; kedro-viz reads it.
    """

    def __init__(
        self, *, dataset: dict[str, Any], metadata: dict[str, Any] | None = None
    ) -> None:
        self._config = dict(dataset)
        self._dataset = AbstractDataset.from_config("optional", self._config)
        self.metadata = metadata
        if hasattr(self._dataset, "preview"):
            # kedro-viz previews the wrapped type (it reads the method's annotation).
            self.preview = self._dataset.preview

    def load(self) -> Any:
        if not self._dataset.exists():
            logger.info(
                "%s does not exist (not produced yet): loaded as None",
                self._config.get("filepath"),
            )
            return None
        data = self._dataset.load()
        if hasattr(data, "attrs"):  # a DataFrame: say where and when it was written
            data.attrs["source"] = {
                "filepath": str(self._config.get("filepath")),
                "modified": self._modified(),
            }
        return data

    def save(self, data: Any) -> None:
        self._dataset.save(data)

    def _modified(self) -> str | None:
        """When the file was last written (UTC, ISO 8601); ``None`` if unknown."""
        filepath = self._config.get("filepath")
        if not filepath:
            return None
        try:
            import fsspec

            fs, path = fsspec.core.url_to_fs(str(filepath))
            modified = fs.modified(path)
        except Exception:  # noqa: BLE001 - some filesystems keep no times
            return None
        if modified.tzinfo is None:
            modified = modified.replace(tzinfo=dt.UTC)
        return modified.astimezone(dt.UTC).isoformat(timespec="seconds")

    def _exists(self) -> bool:
        return self._dataset.exists()

    def _describe(self) -> dict[str, Any]:
        # "filepath" first-level, as kedro-datasets' own: the run summary shows it.
        return {"filepath": self._config.get("filepath"), "dataset": self._config}
