"""Console logging that suits where stdout goes: rich on a terminal, plain lines elsewhere.

Rich wraps every line at the console width (80 columns when the output is a pipe) and
writes colour codes; in a CI log or a Databricks job's driver log that cuts messages
mid-word. So ``conf/logging.yml`` logs plain lines (:data:`PLAIN_FORMAT`) from the
first line on, and :func:`rich_console_on_terminal`, called by the project's hooks when
a session starts, puts rich in their place when stdout is a terminal. Kedro only accepts
handler classes of ``logging`` and ``kedro.logging`` in that file, so the choice cannot
be made there. :func:`plain_console_when_piped` does the reverse for a logging
configuration that uses rich (``KEDRO_LOGGING_CONFIG`` pointing at Kedro's own).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any, Literal

PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# Colour and cursor codes (CSI sequences), as some libraries write them unconditionally.
ANSI_CODE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# The libraries' own switches for their download, map and artifact progress bars.
PROGRESS_BAR_SWITCHES = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


class PlainFormatter(logging.Formatter):
    """:data:`PLAIN_FORMAT` lines with any colour code in the message taken out."""

    def __init__(self) -> None:
        super().__init__(PLAIN_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return ANSI_CODE.sub("", super().format(record))


def show_progress(setting: bool | Literal["auto"], stream: Any = None) -> bool:
    """Whether to draw a progress bar: ``auto`` draws one on a terminal only.

    A bar redraws itself with carriage returns and cursor codes, which a piped log
    (CI, a Databricks driver log) keeps as one long garbled line.
    """
    if setting == "auto":
        return (stream or sys.stderr).isatty()
    return bool(setting)


def route_transformers_logs() -> None:
    """Send transformers' log records through the project's handlers.

    transformers logs to stderr through a handler of its own (no timestamp, colour
    codes in its weight-loading report); its documented switches make it propagate
    to the root logger instead, so its records look like every other line.
    """
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_default_handler()
    transformers_logging.enable_propagation()


def _is_plain_console(handler: logging.Handler, stream: Any) -> bool:
    return type(handler) is logging.StreamHandler and handler.stream is stream


def rich_console_on_terminal(
    logger: logging.Logger | None = None, stream: Any = None
) -> list[logging.Handler]:
    """Replace ``logger``'s plain handlers on ``stream`` by rich ones on a terminal.

    Args:
        logger: Default: the root logger.
        stream: The stream the plain handlers write to; default stdout.

    Returns:
        The rich handlers put in place (none when ``stream`` is no terminal).
    """
    logger = logger or logging.getLogger()
    stream = stream or sys.stdout
    if not stream.isatty():
        return []
    from kedro.logging import RichHandler

    replaced = []
    for handler in list(logger.handlers):
        if _is_plain_console(handler, stream):
            rich = RichHandler(rich_tracebacks=True)
            rich.setLevel(handler.level)
            logger.removeHandler(handler)
            logger.addHandler(rich)
            replaced.append(rich)
    return replaced


def plain_console_when_piped(
    logger: logging.Logger | None = None, stream: Any = None
) -> list[logging.Handler]:
    """Plain, uncoloured console lines and no library progress bars on a pipe.

    Replaces ``logger``'s rich handlers by plain ones, gives every plain console
    handler on ``stream`` the :class:`PlainFormatter`, and sets the libraries'
    progress-bar switches (unless the user set them) before they are imported.
    Nothing changes when ``stream`` is a terminal.

    Args:
        logger: Default: the root logger.
        stream: Where the plain lines go; default stdout.

    Returns:
        The handlers put in place of rich ones.
    """
    logger = logger or logging.getLogger()
    stream = stream or sys.stdout
    if stream.isatty():
        return []
    from rich.logging import RichHandler

    for switch, off in PROGRESS_BAR_SWITCHES.items():
        os.environ.setdefault(switch, off)
    replaced = []
    for handler in list(logger.handlers):
        if isinstance(handler, RichHandler):
            plain = logging.StreamHandler(stream)
            plain.setLevel(handler.level)
            plain.setFormatter(PlainFormatter())
            logger.removeHandler(handler)
            logger.addHandler(plain)
            replaced.append(plain)
        elif _is_plain_console(handler, stream):
            handler.setFormatter(PlainFormatter())
    if replaced and sys.excepthook is not sys.__excepthook__:
        sys.excepthook = (
            sys.__excepthook__
        )  # rich's boxed tracebacks, installed with it
    return replaced
