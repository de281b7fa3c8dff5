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
    >>> db.open(Progress("restart", 0, minimum=0, lines=True).update)   # doctest: +SKIP

    ``update``'s ``stage`` names the part of a run of several (a restart's
    reading, decoding, building and replaying): each stage's start and end
    are always shown, as ``restart: building the tree (keys): 65536/10000000 (1%)``.
    """

    def __init__(self, label: str, total: int, minimum: int = 1000, unit: str = "", *, lines: bool = False,
                 stream: TextIO | None = None) -> None:
        self.label, self.total, self.done, self.minimum, self.unit = label, total, 0, minimum, unit
        self.stream = stream or sys.stderr
        self.in_place = not lines
        self.last = 0.0
        self.drawn = False
        self.stage: str | None = None

    def add(self, count: int) -> None:
        """Count ``count`` more items done."""
        self.update(self.done + count, self.total)

    def update(self, done: int, total: int, stage: str | None = None) -> None:
        """Set the items done of ``total`` (in ``stage``); redraw at most five times a second in place, once a second
        as lines, and always at a stage's start and end."""
        self.done, self.total = done, total
        if total < self.minimum:
            return
        now = time.monotonic()
        new_stage = stage != self.stage
        self.stage = stage
        if now - self.last < (0.2 if self.in_place else 1.0) and done < total and not new_stage:
            return
        self.last = now
        part = min(1.0, done / max(total, 1))
        unit = f" {self.unit}" if self.unit else ""
        label = f"{self.label}: {stage}" if stage else self.label
        if self.in_place:
            self.stream.write(f"\r{label}: [{'#' * int(part * 30):<30}] {part:4.0%} {done}/{total}{unit}")
        else:
            self.stream.write(f"{label}: {done}/{total}{unit} ({part:.0%})\n")
        self.stream.flush()
        self.drawn = True

    def finish(self) -> None:
        """End the bar's line."""
        if self.drawn and self.in_place:
            self.stream.write("\n")
            self.stream.flush()
