"""The command line's one progress display on stderr: a bar redrawn in place, or a line a second for logs."""
from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Progress of a run of ``total`` items, shown only for runs of ``minimum`` items or more.

    ``lines=False`` draws a bar redrawn in place (``pyzdb dump``/``load``);
    ``lines=True`` prints a line at most once a second, for a server's log.

    >>> bar = Progress("dump", 5000, unit="keys"); bar.add(1000); bar.finish()          # doctest: +SKIP
    >>> db.open(Progress("loading checkpoint chunks", 0, minimum=0, lines=True).update)  # doctest: +SKIP
    """

    def __init__(self, label: str, total: int, minimum: int = 1000, unit: str = "", *, lines: bool = False,
                 stream: TextIO | None = None) -> None:
        self.label, self.total, self.done, self.minimum, self.unit = label, total, 0, minimum, unit
        self.stream = stream or sys.stderr
        self.in_place = not lines
        self.last = 0.0
        self.drawn = False

    def add(self, count: int) -> None:
        """Count ``count`` more items done."""
        self.update(self.done + count, self.total)

    def update(self, done: int, total: int) -> None:
        """Set the items done of ``total``; redraw at most five times a second in place, once a second as lines."""
        self.done, self.total = done, total
        if total < self.minimum:
            return
        now = time.monotonic()
        if now - self.last < (0.2 if self.in_place else 1.0) and done < total:
            return
        self.last = now
        part = min(1.0, done / max(total, 1))
        unit = f" {self.unit}" if self.unit else ""
        if self.in_place:
            self.stream.write(f"\r{self.label}: [{'#' * int(part * 30):<30}] {part:4.0%} {done}/{total}{unit}")
        else:
            self.stream.write(f"{self.label}: {done}/{total}{unit} ({part:.0%})\n")
        self.stream.flush()
        self.drawn = True

    def finish(self) -> None:
        """End the bar's line."""
        if self.drawn and self.in_place:
            self.stream.write("\n")
            self.stream.flush()
