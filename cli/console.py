"""One writer for stdout: every child's lines, prefixed with its name, never interleaved mid-line."""

from __future__ import annotations

import sys
import threading
from typing import TextIO

OWN_NAME = "ifcflow"


class Console:
    """Line-prefixed output shared by the supervisor and the threads that pump children's output."""

    def __init__(self, stream: TextIO | None = None, width: int = len(OWN_NAME)) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self._lock = threading.Lock()
        self.width = width

    def widen(self, name: str) -> None:
        self.width = max(self.width, len(name))

    def line(self, name: str, text: str) -> None:
        with self._lock:
            try:
                self._stream.write(f"{name:<{self.width}} | {text}\n")
                self._stream.flush()
            except (BrokenPipeError, ValueError):  # our stdout went away; the children keep running
                pass

    def say(self, text: str) -> None:
        """A line of our own, under the ``ifcflow`` prefix."""
        self.line(OWN_NAME, text)

    def block(self, lines: list[str]) -> None:
        """Several lines of our own written together (the banner)."""
        for text in lines:
            self.say(text)
