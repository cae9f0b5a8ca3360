"""Plain console logging when the output is not a terminal.

Rich wraps every line at the console width (80 columns when the output is a pipe) and
writes colour codes; in a CI log or a Databricks job's driver log that cuts messages
mid-word. Kedro sets logging up from ``conf/logging.yml`` at import time and only
accepts handler classes of ``logging`` and ``kedro.logging`` there, so the swap happens
afterwards: :func:`plain_console_when_piped`, called by the project's hooks when a
session starts, replaces rich console handlers with plain stream handlers unless
stdout is a terminal.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def plain_console_when_piped(
    logger: logging.Logger | None = None, stream: Any = None
) -> list[logging.Handler]:
    """Replace ``logger``'s rich handlers by plain ones when ``stream`` is no terminal.

    Args:
        logger: Default: the root logger.
        stream: Where the plain lines go; default stdout.

    Returns:
        The handlers put in place (none on a terminal).
    """
    logger = logger or logging.getLogger()
    stream = stream or sys.stdout
    if stream.isatty():
        return []
    from rich.logging import RichHandler

    replaced = []
    for handler in list(logger.handlers):
        if isinstance(handler, RichHandler):
            plain = logging.StreamHandler(stream)
            plain.setLevel(handler.level)
            plain.setFormatter(logging.Formatter(PLAIN_FORMAT))
            logger.removeHandler(handler)
            logger.addHandler(plain)
            replaced.append(plain)
    if replaced and sys.excepthook is not sys.__excepthook__:
        sys.excepthook = (
            sys.__excepthook__
        )  # rich's boxed tracebacks, installed with it
    return replaced
