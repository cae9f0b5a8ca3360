"""Console logging suits stdout: plain, unwrapped lines on a pipe, rich on a terminal."""

from __future__ import annotations

import io
import logging
import os
import sys

from rich.logging import RichHandler

from llm_finetuning.console import (
    PROGRESS_BAR_SWITCHES,
    PlainFormatter,
    plain_console_when_piped,
    rich_console_on_terminal,
    show_progress,
)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_piped_output_gets_plain_lines(monkeypatch):
    monkeypatch.setattr(sys, "excepthook", lambda *args: None)  # as rich installs one
    for switch in PROGRESS_BAR_SWITCHES:  # set by the call; restored after the test
        monkeypatch.delenv(switch, raising=False)
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


def test_a_terminal_gets_rich_in_place_of_the_plain_console(monkeypatch):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # rich installs its own
    terminal = Terminal()
    logger = logging.getLogger("test_console.to_rich")
    logger.propagate = False
    plain = logging.StreamHandler(terminal)
    plain.setLevel(logging.WARNING)
    other = logging.StreamHandler(io.StringIO())  # not the console: left alone
    logger.handlers = [plain, other]
    rich = rich_console_on_terminal(logger, terminal)
    assert len(rich) == 1 and isinstance(rich[0], RichHandler)
    assert rich[0].level == logging.WARNING
    assert logger.handlers == [other, rich[0]]


def test_a_pipe_keeps_the_plain_console():
    piped = io.StringIO()
    logger = logging.getLogger("test_console.stays_plain")
    plain = logging.StreamHandler(piped)
    logger.handlers = [plain]
    assert rich_console_on_terminal(logger, piped) == []
    assert logger.handlers == [plain]


def test_plain_lines_carry_no_colour_or_cursor_codes():
    record = logging.LogRecord(
        "transformers",
        logging.WARNING,
        __file__,
        1,
        "\x1b[1mBertModel LOAD REPORT\x1b[0m from: x\x1b[A",
        None,
        None,
    )
    line = PlainFormatter().format(record)
    assert "\x1b" not in line
    assert line.endswith("WARNING transformers: BertModel LOAD REPORT from: x")


def test_progress_bars_are_drawn_on_a_terminal_only():
    assert show_progress("auto", Terminal()) is True
    assert show_progress("auto", io.StringIO()) is False
    assert show_progress(True, io.StringIO()) is True
    assert show_progress(False, Terminal()) is False


def test_a_piped_run_switches_library_progress_bars_off_unless_the_user_chose(
    monkeypatch,
):
    for switch in PROGRESS_BAR_SWITCHES:
        monkeypatch.delenv(switch, raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "0")  # the user's choice
    piped = io.StringIO()
    root = logging.getLogger()
    plain = logging.StreamHandler(piped)
    monkeypatch.setattr(root, "handlers", [plain])
    assert plain_console_when_piped(stream=piped) == []  # no rich handler to replace
    assert root.handlers == [plain]
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "0"
    assert os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] == "1"
    assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"
    assert isinstance(plain.formatter, PlainFormatter)


def test_a_terminal_keeps_library_progress_bars(monkeypatch):
    for switch in PROGRESS_BAR_SWITCHES:
        monkeypatch.delenv(switch, raising=False)
    assert plain_console_when_piped(stream=Terminal()) == []
    assert not any(switch in os.environ for switch in PROGRESS_BAR_SWITCHES)
