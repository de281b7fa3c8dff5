"""The one place ``pyzdb`` installs signal handlers: run a blocking call until SIGTERM or SIGINT asks it to stop."""
from __future__ import annotations

import signal
import sys
from typing import Callable


def run_until_signal(stop: Callable[[], None], run: Callable[[], None]) -> None:
    """Call ``run()`` (it blocks); SIGTERM and SIGINT call ``stop()``, which must make ``run`` return.

    >>> run_until_signal(server.stop, server.serve_forever)     # doctest: +SKIP
    """
    def handler(signum, frame):
        print(f"pyzdb: {signal.Signals(signum).name} received, stopping", file=sys.stderr, flush=True)
        stop()
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    run()
