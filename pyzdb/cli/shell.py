"""``pyzdb shell``: an interactive Python prompt with ``db`` bound, history and pretty printing."""
from __future__ import annotations

import builtins
import code
import os
import pprint
import sys
from typing import Any

from pyzdb.client import File, Proxy, client
from pyzdb.errors import Error

HISTORY = os.path.expanduser("~/.pyzdb_history")


def display(value: object) -> None:
    """Show a result as Python would, reading proxies first and pretty-printing large values."""
    if value is None:
        return
    builtins._ = None
    if isinstance(value, Proxy):
        value = value._run()
    pprint.pprint(value, sort_dicts=False)
    builtins._ = value


def _enable_history() -> None:
    try:
        import atexit
        import readline
    except ImportError:
        return
    try:
        readline.read_history_file(HISTORY)
    except OSError:
        pass
    atexit.register(lambda: readline.write_history_file(HISTORY))


class Console(code.InteractiveConsole):
    """A console that shows pyzdb errors as one line instead of a traceback."""

    def showtraceback(self) -> None:
        kind, exc, _ = sys.exc_info()
        if isinstance(exc, Error):
            self.write(f"{type(exc).__name__}: {exc}\n")
        else:
            super().showtraceback()


def run_shell(uris: list[str], **options: Any) -> int:
    """Run the prompt until end of input (``options``: ``client()``'s, such as CURVE keys)."""
    db, socket = client(*(uris or []), **options)
    try:
        db.ping()        # say at once when nothing is there
    except Error as exc:
        print(f"pyzdb shell: {exc}", file=sys.stderr)
        return 1
    sys.displayhook = display
    sys.ps1, sys.ps2 = "> ", ". "
    if sys.stdin.isatty():
        _enable_history()
    banner = f"pyzdb shell: `db` is the tree at {uris[0] if uris else 'tcp://127.0.0.1:5559'}"
    Console({"db": db, "socket": socket, "File": File}).interact(banner, "")
    return 0
