"""A small user-space TCP proxy that delays every byte by a fixed time in each direction (this kernel has no netem).

``python tests/delay_proxy.py LISTEN_HOST:PORT TARGET_HOST:PORT DELAY_MS``;
it prints ``ready`` once listening. Order is kept: each direction is one
queue of (due time, bytes).
"""
from __future__ import annotations

import asyncio
import sys
import time


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    queue: asyncio.Queue = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            if data is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    sender = asyncio.ensure_future(deliver())
    try:
        while data := await reader.read(1 << 16):
            queue.put_nowait((time.monotonic() + delay, data))
    except OSError:
        pass
    queue.put_nowait((0.0, None))
    try:
        await sender
    except OSError:
        pass


async def main(listen: str, target: str, delay_ms: float) -> None:
    delay = delay_ms / 1000
    target_host, target_port = target.rsplit(":", 1)

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(target_host, int(target_port))
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer, delay), _pipe(up_reader, writer, delay))

    host, port = listen.rsplit(":", 1)
    server = await asyncio.start_server(accept, host, int(port))
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
