"""The servers: the read-write loop (``rw``) over the ``database`` state machine and its ``checkpoint``er, and the read-only replica (``replica``, ``follower``, ``watch``).

``python -m pyzdb.server`` is ``pyzdb server``.
"""
