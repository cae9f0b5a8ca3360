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
    the scratch folder is removed and ``target`` is left as it was; what a killed
    process left behind is cleared by the next save (:func:`clean_interrupted_saves`).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_interrupted_saves(target)
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


def clean_interrupted_saves(target: str | os.PathLike) -> list[Path]:
    """Remove the scratch folders that killed saves of ``target`` left; return them.

    A kill between the two renames leaves no ``target`` but its previous content as
    ``.<name>.old-*``: that is put back first, so a reader finds the last complete
    folder rather than nothing.
    """
    target = Path(target)
    retired = sorted(
        target.parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime
    )
    if retired and not target.exists():
        os.replace(retired.pop(), target)
    leftovers = [*target.parent.glob(f".{target.name}.tmp-*"), *retired]
    for leftover in leftovers:
        shutil.rmtree(leftover, ignore_errors=True)
    return leftovers
