"""``python -m pyzdb.broker``: the same as ``pyzdb broker``."""
import sys

from pyzdb.cli import main

main(["broker", *sys.argv[1:]])
