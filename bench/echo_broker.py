"""The raw-pyzmq baseline: pyzdb's broker topology (ROUTER front, DEALER back, zmq.proxy) with an echo server.

Run as its own process, like ``pyzdb serve``: the proxy on a thread, the
echo server on the main thread behind an inproc back end. It sends every
message back unchanged, so a round trip through it is the floor that zmq,
the proxy and one Python recv/send loop set for any request.

    python -m bench.echo_broker tcp://127.0.0.1:PORT
"""
from __future__ import annotations

import signal
import subprocess
import sys
import threading

import zmq

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


def start(front_addr: str) -> subprocess.Popen:
    """Start the echo broker as a subprocess (stop it by pid)."""
    return subprocess.Popen([sys.executable, "-m", "bench.echo_broker", front_addr], start_new_session=True)


if __name__ == "__main__":
    serve(sys.argv[1])
