"""``python -m pyzdb``: the command line."""
from .cli import main

main()
