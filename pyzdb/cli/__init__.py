"""``pyzdb serve | broker | server | shell | dump | load | status | check | keygen | bench``: the command line.

``arguments`` parses, ``commands`` runs each subcommand, ``replica`` runs
``server --ro``; ``shell`` and ``dump`` are the interactive prompt and
backup/restore. Only this layer parses arguments and installs signal handlers.
"""
from __future__ import annotations

import logging
import sys

from pyzdb.cli.arguments import build_parser


def main(argv: list[str] | None = None) -> None:
    """Run one ``pyzdb`` subcommand."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from pyzdb.cli import commands
    handler = getattr(commands, "cmd_" + args.command)
    sys.exit(handler(args) or 0)
