"""Rich console logging becomes plain, unwrapped lines when the output is a pipe."""

from __future__ import annotations

import io
import logging
import sys

from rich.logging import RichHandler

from llm_finetuning.console import plain_console_when_piped


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_piped_output_gets_plain_lines(monkeypatch):
    monkeypatch.setattr(sys, "excepthook", lambda *args: None)  # as rich installs one
    logger = logging.getLogger("test_console.piped")
    logger.propagate = False
    logger.addHandler(RichHandler(level=logging.INFO))
    out = io.StringIO()
    plain = plain_console_when_piped(logger, out)
    assert [type(h) for h in logger.handlers] == [logging.StreamHandler]
    assert plain[0].level == logging.INFO
    message = "a long line " * 20
    logger.warning(message)
    assert out.getvalue().count("\n") == 1
    assert message in out.getvalue()
    assert "\x1b[" not in out.getvalue()
    assert sys.excepthook is sys.__excepthook__


def test_a_terminal_keeps_rich():
    logger = logging.getLogger("test_console.terminal")
    rich = RichHandler()
    logger.addHandler(rich)
    assert plain_console_when_piped(logger, Terminal()) == []
    assert logger.handlers == [rich]
