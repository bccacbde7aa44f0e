"""A command run on a pseudo-terminal, as a person at a terminal runs it: the process has a
controlling terminal of a known size, so Ctrl-C typed as ``\\x03`` is a key while a prompt
reads and a SIGINT from the terminal otherwise, exactly as in a real terminal.

``expect`` waits for the output the test is waiting for (what the person would read, escape
codes removed), in order; its timeout only turns a hang into a failure with the screen shown.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import signal
import struct
import termios
import threading
import time
from collections.abc import Mapping, Sequence

# CSI sequences, OSC sequences (titles, hyperlinks), and two-byte escapes.
ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>78MNOc]"
)


def plain(raw: str) -> str:
    """What the terminal's reader sees, near enough: escape codes and carriage returns gone."""
    return ESCAPES.sub("", raw).replace("\r", "")


class PtySession:
    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str,
        rows: int = 40,
        cols: int = 100,
    ) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: its terminal is the pty's other end
            try:
                os.chdir(cwd)
                os.execve(argv[0], list(argv), dict(env))
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self._raw = bytearray()
        self._seen = 0  # where the next expect starts, in plain text
        self._changed = threading.Condition()
        self._closed = False
        self.exit_code: int | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.fd], [], [], 0.5)
                if not ready:
                    if self._closed:
                        return
                    continue
                chunk = os.read(self.fd, 65536)
            except OSError:  # the child closed its end
                chunk = b""
            with self._changed:
                if chunk:
                    self._raw.extend(chunk)
                else:
                    self._closed = True
                self._changed.notify_all()
            if not chunk:
                return

    @property
    def raw(self) -> str:
        with self._changed:
            return self._raw.decode("utf-8", "replace")

    @property
    def text(self) -> str:
        return plain(self.raw)

    def expect(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        """The first match of ``pattern`` (a regex) after the previous expect's match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                text = plain(self._raw.decode("utf-8", "replace"))
                found = regex.search(text, self._seen)
                if found:
                    self._seen = found.end()
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise AssertionError(
                        f"{pattern!r} never appeared; the screen ended with:\n{text[-1500:]}"
                    )
                self._changed.wait(left)

    def shown_since_last_expect(self) -> str:
        return self.text[self._seen :]

    def send(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def wait(self, timeout: float = 60.0) -> int:
        """The exit code, once the process has ended (it must end by itself)."""
        deadline = time.monotonic() + timeout
        while self.exit_code is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.exit_code = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"the process did not end; the screen:\n{self.text[-1500:]}")
            with self._changed:
                self._changed.wait(0.1)
        self._reader.join(5)
        return self.exit_code

    def close(self) -> None:
        if self.exit_code is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
        self._closed = True
        with contextlib.suppress(OSError):
            os.close(self.fd)
