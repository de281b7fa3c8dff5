"""``python -m pyzdb.server``: the same as ``pyzdb server``."""
import sys

from pyzdb.cli import main

main(["server", *sys.argv[1:]])
