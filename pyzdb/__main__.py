"""``python -m pyzdb``: the command line."""
from pyzdb.cli import main

main()
