"""Bytes on the wire: msgpack envelopes (``wire``), ZMTP in Python (``zmtp``, ``router``), CURVE keys (``curve``), heartbeats."""
