"""Supervised child processes end with their parent, however the parent ends.

Each test starts a *parent* Python process (in a session of its own, so the test can
kill its whole group) that starts a process tree under the supervisor of
:mod:`llm_finetuning.processes`: ``bash`` with two ``sleep`` children, one of which
escapes into a session of its own (``setsid``), as servers' workers may. The parent
is then killed in several ways, and every process of the tree must be gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from llm_finetuning import processes
from llm_finetuning.processes import (
    exit_status,
    group_and_descendants,
    start_supervised,
    stop_supervised,
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="parent-death signals are Linux's"
)

SRC = Path(__file__).resolve().parents[1] / "src"
TREE = "sleep 301 & setsid sleep 302 & sleep 303; wait"
PARENT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {src!r})
    from llm_finetuning.processes import start_supervised
    supervisor = start_supervised(["bash", "-c", {tree!r}], stop_timeout_s=2)
    print(supervisor.pid, flush=True)
    time.sleep(600)
    """
)


def alive(pid: int) -> bool:
    """Running (a zombie has ended: it only waits for its parent to collect it)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until(condition, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def tree_of(supervisor_pid: int, size: int) -> list[int]:
    """The supervisor and its descendants, once ``size`` processes have started."""
    found: list[int] = []

    def started() -> bool:
        found[:] = [supervisor_pid] + [
            child.pid
            for child in psutil.Process(supervisor_pid).children(recursive=True)
        ]
        return len(found) >= size

    assert wait_until(started, 30), f"the tree did not start: {found}"
    return found


@pytest.fixture
def parent() -> Iterator[tuple[subprocess.Popen, list[int]]]:
    """A parent process with a supervised tree: (parent, [supervisor, bash, 3 sleeps])."""
    process = subprocess.Popen(
        [sys.executable, "-c", PARENT.format(src=str(SRC), tree=TREE)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    tree: list[int] = []
    try:
        supervisor_pid = int(process.stdout.readline())
        tree = tree_of(supervisor_pid, 5)
        yield process, tree
    finally:
        for pid in [process.pid, *tree]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait(10)
        process.stdout.close()


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "SIGINT"])
def test_the_tree_ends_when_the_parent_is_killed(parent, how):
    process, tree = parent
    os.kill(process.pid, getattr(signal, how))
    process.wait(10)
    assert wait_until(lambda: not any(alive(pid) for pid in tree)), [
        pid for pid in tree if alive(pid)
    ]


def test_the_tree_ends_when_the_parents_group_is_killed(parent):
    """``kill -KILL -<pgid>`` (or Ctrl-C) reaches the parent's group, not the supervisor's
    session, so the supervisor is left to clean up."""
    process, tree = parent
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)
    assert wait_until(lambda: not any(alive(pid) for pid in tree))


def test_stop_supervised_ends_the_tree_and_returns_the_exit_code():
    supervisor = start_supervised(["bash", "-c", TREE], stop_timeout_s=2)
    tree = tree_of(supervisor.pid, 5)
    code = stop_supervised(supervisor, stop_timeout_s=2)
    assert code == 128 + signal.SIGTERM  # bash ended by SIGTERM, as a shell reports it
    assert not any(alive(pid) for pid in tree)


def test_a_command_that_exits_leaves_no_background_process_behind():
    supervisor = start_supervised(
        ["bash", "-c", "setsid sleep 304 & sleep 2; exit 3"], stop_timeout_s=2
    )
    (escapee,) = [
        pid
        for pid in tree_of(supervisor.pid, 4)
        if psutil.Process(pid).cmdline() == ["sleep", "304"]
    ]
    assert supervisor.wait(20) == 3
    assert wait_until(lambda: not alive(escapee))


def test_a_thread_that_started_the_supervisor_may_end():
    """The parent-death signal fires when the starting *thread* ends; the supervisor
    must tell that from the death of the parent process and keep running."""
    started: list[subprocess.Popen] = []
    thread = threading.Thread(
        target=lambda: started.append(start_supervised(["sleep", "305"]))
    )
    thread.start()
    thread.join()
    (supervisor,) = started
    try:
        tree = tree_of(supervisor.pid, 2)
        time.sleep(1.0)
        assert all(alive(pid) for pid in tree)
    finally:
        stop_supervised(supervisor, stop_timeout_s=2)
    assert not any(alive(pid) for pid in tree)


def test_the_supervisor_starts_nothing_when_its_parent_is_already_gone(tmp_path):
    marker = tmp_path / "started"
    result = subprocess.run(
        processes.supervised_command(["touch", str(marker)], parent_pid=1),
        timeout=30,
        check=False,
    )
    assert result.returncode == 1 and not marker.exists()


def test_die_with_parent_ends_a_single_child(tmp_path):
    """The kernel part alone, for a child that forks nothing."""
    script = textwrap.dedent(
        f"""
        import functools, os, signal, subprocess, sys, time
        sys.path.insert(0, {str(SRC)!r})
        from llm_finetuning.processes import die_with_parent
        child = subprocess.Popen(
            ["sleep", "306"],
            preexec_fn=functools.partial(die_with_parent, signal.SIGKILL, os.getpid()),
        )
        print(child.pid, flush=True)
        time.sleep(600)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    )
    child = int(process.stdout.readline())
    try:
        assert alive(child)
        process.kill()
        process.wait(10)
        assert wait_until(lambda: not alive(child))
    finally:
        process.stdout.close()
        if alive(child):
            os.kill(child, signal.SIGKILL)


def test_group_and_descendants_finds_escaped_processes():
    shell = subprocess.Popen(["bash", "-c", TREE], start_new_session=True)
    try:
        descendants = tree_of(shell.pid, 4)[1:]
        assert group_and_descendants(shell.pid) == sorted(descendants)
        escaped = [p for p in descendants if os.getpgid(p) != shell.pid]
        assert len(escaped) == 1  # the setsid one, found through its parent
    finally:
        # Listed before the shell dies: its orphans are reparented away from it then.
        victims = group_and_descendants(shell.pid)
        os.killpg(shell.pid, signal.SIGKILL)
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shell.wait(10)


def test_exit_status_and_arguments():
    assert exit_status(0) == 0 and exit_status(3) == 3
    assert exit_status(-signal.SIGTERM) == 143 and exit_status(None) == 1
    with pytest.raises(ValueError, match="sets the session"):
        start_supervised(["true"], start_new_session=False)


def test_the_suite_finds_processes_a_test_leaves_behind_even_orphaned():
    """tests/conftest.py's leak check: a direct child, and an orphan that pytest (a
    child subreaper) inherited when its parent exited."""
    from tests.conftest import _kill, _leftovers, _process_key

    before = {_process_key(p) for p in psutil.Process().children(recursive=True)}
    direct = subprocess.Popen(["sleep", "308"])
    subprocess.run(["bash", "-c", "sleep 309 & disown"], check=True)
    try:
        assert wait_until(
            lambda: (
                {"sleep 308", "sleep 309"}
                <= {" ".join(p.cmdline()) for p in _leftovers(before)}
            )
        )
        orphan = [p for p in _leftovers(before) if p.cmdline() == ["sleep", "309"]]
        assert orphan[0].ppid() == os.getpid()  # reparented here, not to init
    finally:
        _kill(_leftovers(before))
        direct.wait(10)
    assert not _leftovers(before)
