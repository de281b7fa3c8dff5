"""``prefetched``: an iterator run one step ahead on a thread, so reading (or decoding) overlaps the caller's work."""
from __future__ import annotations

import queue
import threading
from typing import Iterator, TypeVar

T = TypeVar("T")
_DONE = object()


def prefetched(items: Iterator[T], ahead: int = 2) -> Iterator[T]:
    """The items of ``items``, produced on a thread up to ``ahead`` items before the caller takes them.

    An exception of the iterator is raised here, after the items before it;
    closing this generator early stops the thread at its next item.

    >>> list(prefetched(iter(range(3))))
    [0, 1, 2]
    """
    handoff: queue.Queue = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        handoff.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            handoff.put((_DONE, None))
        except BaseException as exc:    # handed to the caller, who raises it
            handoff.put((_DONE, exc))

    thread = threading.Thread(target=produce, name="pyzdb-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = handoff.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():            # unblock a producer waiting to put
            try:
                handoff.get(timeout=0.1)
            except queue.Empty:
                pass
