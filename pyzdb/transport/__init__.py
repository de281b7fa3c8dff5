"""Bytes on the wire: msgpack envelopes (``wire``), ZMTP in Python (``codec`` under ``dealer`` and ``router``), CURVE keys (``curve``), heartbeats."""
