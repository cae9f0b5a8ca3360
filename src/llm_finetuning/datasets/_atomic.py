"""Atomic replacement of output folders and JSON files, shared by the datasets and
hooks that must never leave half a file."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


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


def write_json_atomically(path: Path, data: Any) -> None:
    """Replace ``path`` with ``data`` as JSON so a reader never sees half of it.

    Written to a temporary file in the same folder (same filesystem), flushed to disk,
    then renamed over ``path``: a kill at any moment leaves the old file or the new one.
    """
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, scratch = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(scratch, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(scratch)
        raise
    # The rename itself is durable only once the folder is flushed (POSIX).
    with contextlib.suppress(OSError):
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
