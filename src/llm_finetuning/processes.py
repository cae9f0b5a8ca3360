"""Child processes that end with the process that started them.

A child started with :class:`subprocess.Popen` outlives its parent when the parent is
killed (SIGKILL cannot be caught, so no ``finally`` runs). Two layers prevent that:

* :func:`die_with_parent` asks Linux to signal the calling process when its parent
  dies (``prctl(PR_SET_PDEATHSIG)``). That covers one process, not its own children:
  the setting is cleared in a forked child, and ``mlflow models serve`` forks uvicorn.
* :func:`start_supervised` therefore starts a small supervisor
  (``python -I .../llm_finetuning/processes.py``) between the caller and the command. The
  supervisor leads its own session and process group, dies-with-parent itself, starts
  the command in its group and, when the caller is gone or the supervisor gets
  SIGTERM/SIGINT/SIGHUP, terminates every process of its group and every orphaned
  descendant (it is their child subreaper), SIGTERM first, SIGKILL after a timeout.

Because the supervisor is in a session of its own, killing the caller's process group
(``kill -KILL -<pgid>``, Ctrl-C in a terminal) does not hit it: it notices the caller
is gone and cleans up. Only a SIGKILL aimed at the supervisor itself leaves the tree
behind (the command itself still gets SIGKILL from its parent-death signal).

Linux only for the kernel parts; elsewhere the supervisor falls back to polling its
parent id.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import functools
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
# The supervisor's parent-death signal. Not SIGTERM: PDEATHSIG fires when the *thread*
# that started the supervisor exits, so the handler checks whether the caller process
# really is gone before it acts (a thread of a live caller may come and go).
PARENT_DEATH_SIGNAL = signal.SIGUSR1
POLL_INTERVAL_S = 0.2
DEFAULT_STOP_TIMEOUT_S = 10.0


# --- kernel helpers -------------------------------------------------------------------


def _prctl(option: int, value: int) -> bool:
    """``prctl(option, value)``; False where there is no prctl (not Linux) or it failed."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return libc.prctl(option, value, 0, 0, 0) == 0


def die_with_parent(sig: int = signal.SIGKILL, parent_pid: int | None = None) -> bool:
    """Have the kernel send ``sig`` to this process when its parent dies.

    Call it in the child (first thing after start, or as ``Popen(preexec_fn=...)`` in a
    single-threaded parent). If ``parent_pid`` is given and the parent is already gone
    (it died before this call), ``sig`` is raised at once.

    Returns:
        Whether the kernel accepted the request (False on other systems).
    """
    accepted = _prctl(PR_SET_PDEATHSIG, int(sig))
    if parent_pid is not None and os.getppid() != parent_pid:
        os.kill(os.getpid(), sig)
    return accepted


def become_subreaper() -> bool:
    """Adopt orphaned descendants (they are reparented here, not to init)."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """``(state, ppid, pgrp)`` of ``pid`` from ``/proc``; None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2])


def _live_processes() -> dict[int, tuple[int, int]]:
    """``pid -> (ppid, pgrp)`` of every process that is not a zombie."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[0] not in ("Z", "X"):
                table[int(entry.name)] = (stat[1], stat[2])
    return table


def group_and_descendants(root: int) -> list[int]:
    """Live processes in ``root``'s process group or below ``root``, ``root`` excluded."""
    if not Path("/proc").is_dir():
        return []
    table = _live_processes()
    found = {pid for pid, (_, pgrp) in table.items() if pgrp == root}
    # Group members' own children may have left the group (setsid): walk below them too.
    frontier = [root, *found]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _) in table.items():
            if ppid == parent and pid not in found:
                found.add(pid)
                frontier.append(pid)
    found.discard(root)
    return sorted(found)


def _signal_all(pids: Sequence[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _reap_orphans(keep: int) -> None:
    """Collect exited orphans this subreaper adopted (they would stay zombies).

    ``keep`` (the command, whose exit code :class:`subprocess.Popen` collects) is left
    alone: ``waitpid(-1)`` would take its status away from ``Popen``.
    """
    me = os.getpid()
    for entry in Path("/proc").glob("[0-9]*"):
        stat = _proc_stat(int(entry.name))
        if stat is not None and stat[0] == "Z" and stat[1] == me:
            if int(entry.name) != keep:
                try:
                    os.waitpid(int(entry.name), os.WNOHANG)
                except ChildProcessError:
                    pass


# --- the supervisor -------------------------------------------------------------------


class Supervisor:
    """Runs one command and ends its whole process tree with the caller.

    Attributes:
        parent_pid: The caller; when ``os.getppid()`` differs from it, it has died.
        stop_timeout_s: How long SIGTERM may take before SIGKILL.
    """

    def __init__(
        self, command: Sequence[str], parent_pid: int, stop_timeout_s: float
    ) -> None:
        self.command = list(command)
        self.parent_pid = parent_pid
        self.stop_timeout_s = stop_timeout_s
        self.stop_reason: str | None = None
        self.child: subprocess.Popen | None = None

    def parent_alive(self) -> bool:
        return os.getppid() == self.parent_pid

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if signum == PARENT_DEATH_SIGNAL:
            if not self.parent_alive():
                self.stop_reason = "the parent process died"
        else:
            self.stop_reason = f"received {signal.Signals(signum).name}"

    def install_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, PARENT_DEATH_SIGNAL):
            signal.signal(sig, self._on_signal)

    def run(self) -> int:
        """Start the command, wait for it or for a reason to stop; the child's exit code."""
        self.install_handlers()
        die_with_parent(PARENT_DEATH_SIGNAL)
        become_subreaper()
        if not self.parent_alive() or self.stop_reason is not None:
            return 1  # the caller died (or stopped us) before we were set up: start nothing
        self.child = subprocess.Popen(
            self.command,
            # This process is single-threaded, so preexec_fn is safe here. If the
            # supervisor itself is SIGKILLed, the command at least goes with it.
            preexec_fn=functools.partial(  # noqa: PLW1509 (single-threaded, see above)
                die_with_parent, signal.SIGKILL, os.getpid()
            ),
        )
        while self.stop_reason is None and self.child.poll() is None:
            if not self.parent_alive():
                self.stop_reason = "the parent process died"
                break
            time.sleep(POLL_INTERVAL_S)
        if self.stop_reason is not None:
            logger.info(
                "%s: stopping %s (pid %d) and its processes",
                self.stop_reason,
                self.command[0],
                self.child.pid,
            )
        self.terminate_tree()
        return exit_status(self.child.returncode)

    def terminate_tree(self) -> None:
        """SIGTERM to the group and descendants, SIGKILL to what is left after the timeout."""
        # Nothing may interrupt the clean-up half-way.
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        me = os.getpid()
        _signal_all(group_and_descendants(me), signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        while time.monotonic() < deadline:
            assert self.child is not None
            self.child.poll()
            _reap_orphans(keep=self.child.pid)
            if not group_and_descendants(me):
                break
            time.sleep(POLL_INTERVAL_S)
        leftovers = group_and_descendants(me)
        if leftovers:
            logger.warning("SIGKILL to %s after %g s", leftovers, self.stop_timeout_s)
            _signal_all(leftovers, signal.SIGKILL)
        assert self.child is not None
        try:
            self.child.wait(timeout=self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            pass
        _reap_orphans(keep=self.child.pid)


def exit_status(returncode: int | None) -> int:
    """A shell-style exit status: ``128 + n`` for a child killed by signal ``n``."""
    if returncode is None:
        return 1
    return 128 - returncode if returncode < 0 else returncode


def supervised_command(
    command: Sequence[str],
    *,
    stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S,
    parent_pid: int | None = None,
) -> list[str]:
    """``command`` wrapped in the supervisor (see the module docstring)."""
    # By file path, in isolated mode (-I): the supervisor imports only the standard
    # library, so it runs whether or not this package is importable in the child's
    # environment, and -I keeps this folder and PYTHON* variables out of its sys.path.
    return [
        sys.executable,
        "-I",
        str(Path(__file__).resolve()),
        "--parent-pid",
        str(os.getpid() if parent_pid is None else parent_pid),
        "--stop-timeout",
        str(stop_timeout_s),
        "--",
        *command,
    ]


def start_supervised(
    command: Sequence[str],
    *,
    stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S,
    **popen_kwargs: Any,
) -> subprocess.Popen:
    """Start ``command`` under a supervisor; its whole tree ends with this process.

    ``popen_kwargs`` go to :class:`subprocess.Popen` (``stdout``, ``env``, ``cwd``...);
    the supervisor passes its standard streams and environment on to the command.
    Stop it with :func:`stop_supervised`.
    """
    if "start_new_session" in popen_kwargs or "preexec_fn" in popen_kwargs:
        raise ValueError("start_supervised sets the session and preexec_fn itself")
    return subprocess.Popen(
        supervised_command(command, stop_timeout_s=stop_timeout_s),
        # Its own session: a signal to the caller's group (Ctrl-C, kill -<pgid>) leaves
        # the supervisor alive to clean up after the caller.
        start_new_session=True,
        **popen_kwargs,
    )


def stop_supervised(
    process: subprocess.Popen, stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S
) -> int | None:
    """SIGTERM the supervisor (it stops its tree); SIGKILL its whole group if it hangs.

    Returns:
        The supervisor's exit code (the command's, see :func:`exit_status`).
    """
    if process.poll() is None:
        try:
            process.send_signal(signal.SIGTERM)
            # The supervisor itself waits up to stop_timeout_s twice (SIGTERM, then
            # after SIGKILL): leave it that long plus a margin.
            process.wait(2 * stop_timeout_s + 5)
        except subprocess.TimeoutExpired:
            logger.warning(
                "Supervisor %d did not stop: SIGKILL to its group", process.pid
            )
            kill_group(process.pid)
            process.wait(stop_timeout_s)
    return process.returncode


def kill_group(pgid: int) -> None:
    """SIGKILL every process of group ``pgid`` (gone already is fine)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m llm_finetuning.processes --parent-pid PID [--stop-timeout S] -- CMD...``"""
    parser = argparse.ArgumentParser(prog="python -I processes.py")
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--stop-timeout", type=float, default=DEFAULT_STOP_TIMEOUT_S)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    # The supervised command's output goes to the same stream: mark these lines.
    logging.basicConfig(
        level=logging.INFO,
        format="[supervisor %(process)d] %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to supervise")
    return Supervisor(command, args.parent_pid, args.stop_timeout).run()


if __name__ == "__main__":
    sys.exit(main())
