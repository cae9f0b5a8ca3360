"""Turn a text decoding failure into an error that says which setting fixes it.

pandas reports a non-UTF-8 file as ``'utf-8' codec can't decode byte 0xe9 in position
26``: true, but it names neither the file nor the catalog option (``load_args:
{encoding: ...}``) that fixes it. Both the catalog-level hook (a file loaded by the
runner) and the ``load_raw_splits`` node (a ``PartitionedDataset`` partition loaded
inside the node) use :func:`decoding_hint`.
"""

from __future__ import annotations

# Examples only (the file's real encoding is the user's to know); these two cover
# most non-UTF-8 review exports (Western European text, Excel on Windows).
_EXAMPLE_ENCODINGS = "latin-1 or cp1252"


def find_decode_error(exc: BaseException) -> UnicodeDecodeError | None:
    """The ``UnicodeDecodeError`` behind ``exc`` (itself, its cause or context)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    # Kedro wraps the pandas error in one or two DatasetErrors ``from`` it.
    while current is not None and id(current) not in seen:
        if isinstance(current, UnicodeDecodeError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def decoding_hint(
    exc: BaseException, dataset_name: str, filepath: object | None, option: str
) -> str | None:
    """A sentence naming the file, the failed codec and the option to set; or None.

    Args:
        exc: The error a load raised.
        dataset_name: The catalog entry, for the user to find it.
        filepath: The file that failed, where the dataset knows it.
        option: The catalog option to set, e.g. ``load_args: {encoding: ...}``.

    Returns:
        ``None`` when ``exc`` is not a decoding failure.
    """
    error = find_decode_error(exc)
    if error is None:
        return None
    where = f"file {filepath}" if filepath is not None else "its file"
    # No position: pandas decodes in chunks, so the one in the error is not an
    # offset in the file.
    byte = error.object[error.start : error.start + 1]
    return (
        f"Catalog entry '{dataset_name}' ({where}) is not valid {error.encoding} "
        f"text (byte {byte!r}). Set the file's encoding in the catalog entry "
        f"'{dataset_name}': {option}, e.g. encoding: {_EXAMPLE_ENCODINGS}."
    )
