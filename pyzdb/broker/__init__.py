"""The broker: the read-write and read-only request queues (``queues``) and the servers' health table (``health``).

``python -m pyzdb.broker`` is ``pyzdb broker``.
"""
