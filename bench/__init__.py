"""pyzdb's benchmarks: ``python -m bench`` (the comparison suite) and one module per measurement."""
