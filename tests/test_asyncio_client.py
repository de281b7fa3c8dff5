"""The asyncio client against a real `pyzdb serve`: reads, writes, methods, iteration, locks, batches, many tasks."""
import asyncio

import pytest

from pyzdb.asyncio import client
from pyzdb.errors import ClientClosed, LockTimeout, MethodNotAllowed, NoAnswer, PathKeyError
from pyzdb.testing import EmbeddedService, free_ports


def run(coroutine):
    return asyncio.run(coroutine)


@pytest.fixture(scope="module")
def aservice():
    with EmbeddedService("--lock-lease", "2", "--lock-wait", "3") as svc:
        yield svc


async def fresh(service, **options):
    db, socket = await client(service.rw_uri, timeout=10, **options)
    for key in await db.keys():
        await db[key].delete()
    return db, socket


def test_reads_writes_and_methods(aservice):
    async def main():
        db, socket = await fresh(aservice)
        await db["x"].set(3)
        assert await db["x"] == 3
        await db["l"].set(list(range(5)))
        await db["l"].append(5)
        assert await db["l"][-1] == 5 and await db["l"].len() == 6 and await db["l"].contains(2)
        assert await db["l"].pop() == 5 and await db["l"].index(3) == 3
        assert await db["x"].increment(2) == 5 and await db["c"].increment() == 1
        assert await db["x"].add(10) == 15
        assert await db["x"].compare_and_set(15, 0) and not await db["x"].compare_and_set(15, 1)
        assert [v async for v in db["l"]] == [0, 1, 2, 3, 4]
        await db["d"].set({})
        await (await db["d"].setdefault("z", [])).append(1)
        assert await db["d"] == {"z": [1]}
        await db["x"].delete()
        with pytest.raises(PathKeyError):
            await db["x"]
        with pytest.raises(MethodNotAllowed):
            await db["c"].upper()
        with pytest.raises(TypeError):
            db["y"] = 1
        await db["u"].set(1)
        await db.undo()
        assert not await db.contains("u")
        await db.redo()
        assert await db["u"] == 1
        await socket.close()
        with pytest.raises(ClientClosed):
            await db["u"]
    run(main())


def test_a_thousand_concurrent_tasks_on_one_client_each_increment_applied_once(aservice):
    async def main():
        db, socket = await fresh(aservice)
        await db["n"].set(0)
        await db["seen"].set([])

        async def task(i):
            await db["n"].increment()
            await db["seen"].append(i)
            return await db["n"]

        results = await asyncio.gather(*(task(i) for i in range(1000)))
        assert await db["n"] == 1000
        assert sorted(await db["seen"]) == list(range(1000))
        assert max(results) == 1000 and min(results) >= 1
        assert len(db._conn.free_lanes) <= 1000    # lanes were given back and reused
        await db.close()
    run(main())


def test_lock_excludes_other_clients_and_rolls_back_on_an_exception(aservice):
    async def main():
        db, _ = await fresh(aservice)
        other, _ = await client(aservice.rw_uri, timeout=10)
        await db["x"].set(0)
        async with db.lock():
            await db["x"].set(1)
            await asyncio.sleep(0.1)
            with pytest.raises(LockTimeout):         # another client waits for the lock, then gives up
                await other["x"].set(99)
            assert await db["x"] == 1                # the holder sees its own writes
        assert await other["x"] == 1
        with pytest.raises(RuntimeError):
            async with db.lock():
                await db["x"].set(2)
                raise RuntimeError("boom")
        assert await other["x"] == 1                 # rolled back
        await db.close()
        await other.close()
    run(main())


def test_batches_apply_all_or_none(aservice):
    async def main():
        db, _ = await fresh(aservice)
        async with db.batch() as b:
            b["x"] = 1
            b["l"] = []
            b["l"].append(2)
            b["x"]._run()
        assert b.results == [None, None, None, 1]
        assert await db["l"] == [2]
        with pytest.raises(PathKeyError):
            async with db.batch() as b:
                b["y"] = 1
                b["missing"]["deeper"] = 2
        assert not await db.contains("y")
        await db.close()
    run(main())


def test_a_client_with_nothing_there_fails_fast():
    async def main():
        address = f"tcp://127.0.0.1:{free_ports(1)[0]}"
        with pytest.raises(NoAnswer, match="within 0.5 s"):
            await client(address, timeout=300, connect_timeout=0.5)
    run(main())


def test_reads_go_on_through_a_restart(aservice):
    async def main():
        db, _ = await fresh(aservice)
        await db["k"].set(7)
        aservice.stop()
        restart = asyncio.get_running_loop().run_in_executor(None, lambda: (__import__("time").sleep(1.5),
                                                                             aservice.start()))
        assert await db["k"] == 7
        await restart
        await db.close()
    run(main())
