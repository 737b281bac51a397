"""Build logging: every line goes to the build's log file and to the console, secrets masked.

The dynamic provider's stderr is forwarded to the Pulumi console line by line but is not tied to
a resource, so every console line carries the resource name as a prefix.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import TextIO

MASK = "********"


class Masker:
    """Replaces every registered secret value with a fixed mask, longest first.

    Multi-line secrets are also masked line by line, so a key printed one line at a time is hidden.
    """

    def __init__(self, secrets: list[str] | tuple[str, ...] = ()) -> None:
        self._values: set[str] = set()
        for value in secrets:
            self.add(value)

    def add(self, value: str | None) -> None:
        if not value or len(value) < 3:
            return
        self._values.add(value)
        for line in value.splitlines():
            if len(line.strip()) >= 4:
                self._values.add(line.strip())

    @property
    def values(self) -> frozenset[str]:
        return frozenset(self._values)

    def mask(self, text: str) -> str:
        for value in sorted(self._values, key=len, reverse=True):
            if value in text:
                text = text.replace(value, MASK)
        return text


class BuildLog:
    """A thread-safe per-build logger writing masked lines to a file and a console stream."""

    def __init__(
        self,
        name: str,
        path: Path | None = None,
        *,
        masker: Masker | None = None,
        console: TextIO | None = None,
        verbose: bool = False,
    ) -> None:
        self.name = name
        self.path = path
        self.masker = masker or Masker()
        self._console = console if console is not None else sys.stderr
        self._verbose = verbose
        self._lock = threading.Lock()
        self._file: TextIO | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8", buffering=1)

    def _emit(self, text: str, *, console: bool) -> None:
        stamp = time.strftime("%H:%M:%S")
        with self._lock:
            lines = self.masker.mask(text).splitlines() or [""]
            if self._file is not None:
                for line in lines:
                    self._file.write(f"{stamp} {line}\n")
            if console and self._console is not None:
                try:
                    for line in lines:
                        self._console.write(f"[{self.name}] {line}\n")
                    self._console.flush()
                except (OSError, ValueError):
                    # The console is gone (the engine that read the provider's stderr was killed): the
                    # build, and above all its cleanups, must go on; the log file still gets every line.
                    self._console = None

    def info(self, text: str) -> None:
        """A progress line: console and file."""
        self._emit(text, console=True)

    def output(self, text: str) -> None:
        """Command output: always to the file, to the console too (a build's output is what users watch)."""
        self._emit(text, console=True)

    def debug(self, text: str) -> None:
        """Detail: file only, console when verbose."""
        self._emit(text, console=self._verbose)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> BuildLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NullLog(BuildLog):
    """A log that writes nowhere: for library calls that want no output."""

    def __init__(self) -> None:
        super().__init__("null", None, console=open("/dev/null", "w"))
