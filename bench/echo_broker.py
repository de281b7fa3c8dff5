"""Echo baselines: a Python loop that sends every message back, behind either of pyzdb's two fronts.

``zmq``: the broker topology (ROUTER front, zmq.proxy thread, inproc DEALER
back, the echo loop on the main thread), the floor that pyzmq, the proxy and
one Python recv/send loop set for any request (``pyzdb serve --curve``).
``zmtp``: the echo loop reads and writes its own ``router.ZmtpRouter`` as
``pyzdb serve`` does without CURVE. Run as its own process, like ``pyzdb serve``.

    python -m bench.echo_broker tcp://127.0.0.1:PORT [zmq|zmtp]
"""
from __future__ import annotations

import signal
import subprocess
import sys
import threading

import zmq

from pyzdb.transport.router import ZmtpRouter

BACK = "inproc://bench-echo-back"


def _proxy(context: zmq.Context, front_addr: str) -> None:
    front, back = context.socket(zmq.ROUTER), context.socket(zmq.DEALER)
    front.bind(front_addr)
    back.bind(BACK)
    try:
        zmq.proxy(front, back)
    except zmq.ContextTerminated:
        pass


def serve(front_addr: str) -> None:
    """Forward ``front_addr`` to an echo loop until SIGTERM."""
    context = zmq.Context.instance()
    threading.Thread(target=_proxy, args=(context, front_addr), daemon=True).start()
    echo = context.socket(zmq.DEALER)
    echo.connect(BACK)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        echo.send_multipart(echo.recv_multipart())


def serve_zmtp(front_addr: str) -> None:
    """Echo on a ``ZmtpRouter`` bound to ``front_addr`` until SIGTERM."""
    router = ZmtpRouter(front_addr, 1 << 30)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        router.wait(500)
        for message in router.drain(1000):
            router.send(message)


def start(front_addr: str, kind: str = "zmq") -> subprocess.Popen:
    """Start an echo process (``kind`` zmq or zmtp) as a subprocess (stop it by pid)."""
    return subprocess.Popen([sys.executable, "-m", "bench.echo_broker", front_addr, kind], start_new_session=True)


if __name__ == "__main__":
    (serve_zmtp if sys.argv[2:] == ["zmtp"] else serve)(sys.argv[1])
