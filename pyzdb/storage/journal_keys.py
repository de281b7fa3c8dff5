"""The journal's store keys: ``meta``, ``ckpt/pending``, ``ckpt/<gen>/<i>`` and ``log/<seq>``."""
from __future__ import annotations

META_KEY = b"meta"
PENDING_KEY = b"ckpt/pending"


def log_key(seq: int) -> bytes:
    """The store key of log record ``seq``."""
    return b"log/%020d" % seq


LOG_PREFIX = b"log/"
LOG_KEY_LENGTH = len(log_key(0))


def log_seq(key: bytes) -> int | None:
    """The seq of a log record's store key (``log_key``'s inverse: ``log/`` and exactly 20 digits), else None."""
    if len(key) != LOG_KEY_LENGTH or not key.startswith(LOG_PREFIX) or not key[len(LOG_PREFIX):].isdigit():
        return None
    return int(key[len(LOG_PREFIX):])


def chunk_key(gen: int, index: int) -> bytes:
    """The store key of checkpoint chunk ``index`` of generation ``gen``."""
    return b"ckpt/%d/%d" % (gen, index)
