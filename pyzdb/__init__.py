"""pyzdb: one nested document tree served to many Python processes over ZeroMQ (see README.md)."""


def __getattr__(name: str) -> str:
    """``pyzdb.__version__``, looked up on first use: importlib.metadata costs every process start ~50 ms."""
    if name != "__version__":
        raise AttributeError(f"module 'pyzdb' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version
    try:
        found = version("pyzdb")
    except PackageNotFoundError:   # run from a source tree that was never installed
        found = "0+unknown"
    globals()["__version__"] = found
    return found
