"""``python -m pyzdb.client [RW_URI [RO_URI ...]]``: the same as ``pyzdb shell``."""
import sys

from pyzdb.cli import main

main(["shell", *sys.argv[1:]])
