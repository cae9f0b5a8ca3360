"""Atomic replacement of output folders, shared by the folder-writing datasets."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a scratch folder beside ``target`` that replaces it only on success.

    Readers never see a half-written folder: the new content is written next to the
    target (same filesystem), then swapped in with two renames. If the block raises,
    the scratch folder is removed and ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    scratch = target.with_name(f".{target.name}.tmp-{token}")
    retired = target.with_name(f".{target.name}.old-{token}")
    scratch.mkdir()
    try:
        yield scratch
        if target.exists():
            os.replace(target, retired)
        os.replace(scratch, target)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        if retired.exists() and not target.exists():
            os.replace(retired, target)
        raise
    shutil.rmtree(retired, ignore_errors=True)
