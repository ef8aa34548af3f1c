"""The supervised program: one process group, started without a shell, stopped as a whole.

The supervisor blocks SIGTERM in all its threads (see :mod:`.run`); a blocked mask
survives ``fork`` and ``exec``, so the program gets SIGTERM unblocked again before it starts,
or it could never be stopped gently. It leads its own process group so that SIGTERM and SIGKILL
also reach what it started (data loader workers, a launcher's children).
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import IO, Final, cast

from ..errors import TrialError
from .collectors import echo_lines

log = logging.getLogger(__name__)

#: lines of the program's stderr kept for the reason of a failure
STDERR_LINES: Final = 20
_POLL_SECONDS: Final = 0.05


class Child:
    """The user's program as a child process."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], capture_stdout: bool) -> None:
        """Describe the program; :meth:`start` runs it.

        Args:
            argv: the rendered command.
            env: its environment.
            capture_stdout: pipe its stdout (the stdout collector) instead of sharing ours.
        """
        self.argv = list(argv)
        self.env = dict(env)
        self.capture_stdout = capture_stdout
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr_thread: threading.Thread | None = None
        self.stopped_by_us = False

    @property
    def pid(self) -> int | None:
        """The program's pid (also its process group id) once started."""
        return self._process.pid if self._process is not None else None

    @property
    def stdout(self) -> IO[bytes] | None:
        """Its stdout pipe when captured."""
        return self._process.stdout if self._process is not None else None

    def start(self) -> None:
        """Start the program.

        Raises:
            TrialError: it cannot be started; the message says why in the user's terms.
        """
        program = self.argv[0]
        try:
            self._process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if self.capture_stdout else None,
                stderr=subprocess.PIPE,
                process_group=0,
                preexec_fn=_unblock_sigterm,
            )
        except FileNotFoundError:
            raise TrialError(
                f"the program {program!r} was not found" + ("" if "/" in program else " on PATH")
            ) from None
        except PermissionError as exc:
            raise TrialError(f"the program {program!r} cannot be executed: {exc.strerror or exc}") from None
        except OSError as exc:
            raise TrialError(f"cannot start the program {program!r}: {exc}") from None
        assert self._process.stderr is not None
        self._stderr_thread = threading.Thread(
            target=echo_lines,
            args=(self._process.stderr, _stderr_buffer(), self.stderr_tail),
            name="program-stderr",
            daemon=True,
        )
        self._stderr_thread.start()
        log.info("started the program (pid %d): %s", self._process.pid, _quote(self.argv))

    def wait(self) -> int:
        """Wait for the program to exit, end what it left running, and reap it.

        Returns:
            Its exit status as ``Popen.returncode`` gives it (negative: killed by that signal).
        """
        assert self._process is not None
        pid = self._process.pid
        # Wait without reaping: while the leader is a zombie its process group id cannot be
        # reused, so killing what is left of the group cannot hit a stranger.
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        self._signal_group(signal.SIGKILL)
        code = self._process.wait()
        if self._stderr_thread is not None:
            self._stderr_thread.join(2.0)
        return code

    def stop(self, grace: float) -> None:
        """SIGTERM to the program's group now, SIGKILL after ``grace`` seconds if still there.

        Args:
            grace: seconds the program has to end on its own.
        """
        self.stopped_by_us = True
        self._signal_group(signal.SIGTERM)
        threading.Thread(target=self._kill_after, args=(grace,), name="program-kill", daemon=True).start()

    def wait_exited(self, timeout: float) -> bool:
        """Whether the program exits within ``timeout`` seconds (does not reap it)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.exited():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_SECONDS)

    def exited(self) -> bool:
        """Whether the program has exited (a zombie or already reaped)."""
        if self._process is None:
            return True
        try:
            info = os.waitid(os.P_PID, self._process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True  # reaped by the main thread
        return info is not None

    def exit_reason(self, code: int) -> str:
        """Why the program failed, in the user's terms, with its last stderr line.

        Args:
            code: the status from :meth:`wait`.

        Returns:
            ``the program exited with code 3: ValueError: boom`` and the like.
        """
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            why = f"the program was killed by {name} ({-code})"
            if -code == signal.SIGKILL and not self.stopped_by_us:
                why += ", perhaps for lack of memory"
        else:
            why = f"the program exited with code {code}"
        last = self.stderr_tail[-1] if self.stderr_tail else ""
        return f"{why}: {last}" if last else why

    def _kill_after(self, grace: float) -> None:
        if not self.wait_exited(grace):
            log.warning("the program did not end %gs after SIGTERM: SIGKILL", grace)
            self._signal_group(signal.SIGKILL)

    def _signal_group(self, signum: int) -> None:
        if self._process is None:
            return
        try:
            os.killpg(self._process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass  # the group is gone already


def _unblock_sigterm() -> None:
    # Runs in the forked child before exec: undo the supervisor's blocked SIGTERM.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def _stderr_buffer() -> IO[bytes]:
    # A stderr without .buffer is taken for a binary stream already (an embedding's stand-in).
    return sys.stderr.buffer if hasattr(sys.stderr, "buffer") else cast(IO[bytes], sys.stderr)


def _quote(argv: Sequence[str]) -> str:
    import shlex

    return shlex.join(argv)
