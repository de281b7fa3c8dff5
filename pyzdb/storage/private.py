"""Private data on disk: directories made 0700 and store files made 0600, and a warning for exposed ones."""
from __future__ import annotations

import logging
import os
import stat

log = logging.getLogger("pyzdb.storage")
EXPOSED = stat.S_IRWXG | stat.S_IRWXO


def make_private_dir(path: str) -> None:
    """Create ``path`` (and its parents) if missing; the directory itself is made 0700 (an existing one is kept)."""
    os.makedirs(path, mode=0o700, exist_ok=True)


def create_private_file(path: str) -> bool:
    """Create an empty file 0600 if none is there (sqlite gives its -wal and -shm the same mode); True if made."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def warn_if_exposed(path: str) -> bool:
    """Log a warning when the file at ``path`` can be read or written by other users; True if it can."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    if not mode & EXPOSED:
        return False
    log.warning("pyzdb: the store %s has mode %s: other local users can read its data and client ids; "
                "run chmod 600 on it (and its -wal and -shm files) and chmod 700 on its directory",
                path, stat.filemode(mode))
    return True
