"""pyzdb: one nested document tree served to many Python processes over ZeroMQ (see README.md)."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pyzdb")
except PackageNotFoundError:   # run from a source tree that was never installed
    __version__ = "0+unknown"
