"""Iteration by cursor: a key present from the first page to the last comes exactly once, whatever others write.

Against real servers (``pyzdb serve``, a ``Cluster`` with a replica) and the
engine itself; the writers' own record of which keys they never touched is
what each walk is checked against.
"""
import asyncio
import collections
import random
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyzdb.asyncio import client as async_client
from pyzdb.cli import dump as dump_cli
from pyzdb.cli.dumpfile import read_records
from pyzdb.errors import CursorError, CursorExpired, MessageTooLarge, QueryError, RequestTooCostly
from pyzdb.testing import Cluster, EmbeddedService
from pyzdb.tree import budget
from pyzdb.tree.cursors import Cursors
from pyzdb.tree.engine import Engine

KEYS = 4000      # stable keys s0.. interleaved with as many volatile ones v0..


def _tree() -> dict:
    tree = {}
    for i in range(KEYS):
        tree[f"s{i}"], tree[f"v{i}"] = i, -i
    return tree


def _stable() -> set:
    return {f"s{i}" for i in range(KEYS)}


def _churn(db, rng: random.Random, state: dict, steps: int) -> None:
    """Delete volatile keys (mostly early ones: what moves positions), add new keys, delete and add one again."""
    for _ in range(steps):
        if state["alive"]:
            victim = state["alive"].pop(0 if rng.random() < 0.7 else rng.randrange(len(state["alive"])))
            del db[victim]
            if rng.random() < 0.3:
                db[victim] = "back"         # deleted then added again: at the end of the dict's order now
        db[f"n{state['new']}"] = 0
        state["new"] += 1


def _walk_reads(engine: Engine, query: dict) -> dict:
    return engine.run(query, budget.DEFAULT_MAX_WORK, 1 << 24).result


# --- the engine ----------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["del", "add", "again", "set"]), st.integers(0, 10 ** 6)), max_size=120),
       st.integers(1, 9))
def test_every_key_present_throughout_comes_exactly_once_whatever_is_written_between_pages(writes, size):
    engine = Engine({i: i for i in range(60)})
    touched, seen, pending = set(), [], list(writes)
    reply = _walk_reads(engine, {"op": "iter", "path": [], "cursor": None, "limit": size})
    seen += reply["page"]
    while reply["cursor"] is not None:
        for kind, number in pending[:5]:
            keys = list(engine.tree)
            key = keys[number % len(keys)] if keys else None
            if kind == "del" and key is not None:
                del engine.tree[key]
            elif kind == "again" and key is not None:
                engine.tree[key] = engine.tree.pop(key)
            elif kind == "set" and key is not None:
                engine.tree[key] = "new value"
            else:
                key = 1000 + number
                engine.tree[key] = 0
            if kind != "set":
                touched.add(key)
        del pending[:5]
        reply = _walk_reads(engine, {"op": "iter", "path": [], "cursor": reply["cursor"], "limit": size})
        seen += reply["page"]
    counts = collections.Counter(seen)
    assert max(counts.values(), default=1) == 1, "a key came twice"
    assert set(range(60)) - touched <= set(counts), "a key present throughout was left out"


def test_a_list_is_iterated_as_it_was_at_its_first_page():
    engine = Engine({"l": list(range(10))})
    reply = _walk_reads(engine, {"op": "iter", "path": ["l"], "cursor": None, "limit": 4})
    items = reply["page"]
    engine.tree["l"].insert(0, "front")
    del engine.tree["l"][5:]
    while reply["cursor"] is not None:
        reply = _walk_reads(engine, {"op": "iter", "path": ["l"], "cursor": reply["cursor"], "limit": 4})
        items += reply["page"]
    assert items == list(range(10))


def test_cursors_are_bounded_by_count_and_entries_and_expire_when_idle():
    now = [0.0]
    cursors = Cursors(max_cursors=3, max_held=250, idle_seconds=10, clock=lambda: now[0])
    node = dict.fromkeys(range(100))
    texts = [cursors.page(node, {"path": [], "cursor": None, "limit": 1})["cursor"] for _ in range(5)]
    assert len(cursors.open) == 2 and cursors.held == 200       # 250 entries hold two snapshots of 100
    assert cursors.facts()["cursor_entries"] <= 200 + 250      # and the dropped ones not yet freed
    with pytest.raises(CursorExpired):
        cursors.page(node, {"path": [], "cursor": texts[0], "limit": 1})
    assert cursors.page(node, {"path": [], "cursor": texts[4], "limit": 1})["page"] == [1]
    now[0] = 11.0
    with pytest.raises(CursorExpired):
        cursors.page(node, {"path": [], "cursor": texts[4], "limit": 1})
    assert len(cursors.open) == 0 and cursors.held == 0
    cursors.page(node, {"path": [], "cursor": None, "limit": 1})           # a later call frees what was dropped
    assert cursors.facts() == {"cursors": 1, "cursor_entries": 100}


def test_at_a_bound_the_owner_holding_the_most_cursors_or_entries_gives_one_up():
    cursors, walked = Cursors(max_cursors=4, max_held=1000), dict.fromkeys(range(300))
    first = {"path": [], "cursor": None, "limit": 1}
    walk = cursors.page(walked, first, owner=b"walker")["cursor"]
    for _ in range(10):                                     # the count bound: the looper's own go
        cursors.page(dict.fromkeys(range(10)), first, owner=b"looper")
    for _ in range(5):                                      # the entries bound: 300 + 3 x 200 + 200 > 1000
        cursors.page(dict.fromkeys(range(200)), first, owner=b"looper")
    assert len(cursors.open) <= 4 and cursors.held <= 1000
    assert cursors.page(walked, {**first, "cursor": walk})["page"] == [1]
    cursors.page(dict.fromkeys(range(800)), first, owner=b"looper")    # no room beside it: the walk goes too
    with pytest.raises(CursorExpired):
        cursors.page(walked, {**first, "cursor": walk})


def test_cursors_opened_in_a_loop_hold_at_most_their_bound_live_and_as_much_again_waiting_to_be_freed():
    cursors, node = Cursors(max_held=200_000), dict.fromkeys(range(150_000))     # 3 chunks a snapshot
    for _ in range(20):
        cursors.page(node, {"path": [], "cursor": None, "limit": 10})
        assert cursors.held <= 200_000 and cursors.facts()["cursor_entries"] <= 2 * 200_000


def test_a_pages_work_does_not_grow_with_its_position_and_passed_chunks_are_let_go():
    engine = Engine(dict.fromkeys(range(200_000), 1))
    query = {"op": "iter", "path": [], "cursor": None, "limit": 1000, "items": True}
    positional = budget.cost(engine.resolve, {"op": "iter", "path": [], "start": 199_000, "limit": 1000, "items": True})
    reply = _walk_reads(engine, query)
    costs, keys, held = [], [key for key, _ in reply["page"]], []
    while reply["cursor"] is not None:
        query = {**query, "cursor": reply["cursor"], "limit": 7_000 if len(keys) > 100_000 else 1000}
        costs.append(budget.cost(engine.resolve, query))
        reply = _walk_reads(engine, query)
        keys += [key for key, _ in reply["page"]]
        held.append(engine.cursors.facts()["cursor_entries"])
    assert keys == list(range(200_000)) and held == sorted(held, reverse=True) and held[-1] < 2 * (1 << 16)
    assert len(set(costs)) == 2 and min(costs) * 2 < positional


def test_a_first_page_refused_as_too_large_leaves_no_cursor_and_the_last_page_reads_again():
    engine = Engine({f"k{i}": "x" * 100 for i in range(50)})
    with pytest.raises(MessageTooLarge):
        engine.run({"op": "iter", "path": [], "cursor": None, "limit": 40, "items": True}, None, 1000)
    assert engine.cursors.facts()["cursors"] == 0
    first = _walk_reads(engine, {"op": "iter", "path": [], "cursor": None, "limit": 30})
    last = {"op": "iter", "path": [], "cursor": first["cursor"], "limit": 30}
    assert _walk_reads(engine, last) == _walk_reads(engine, last) == {"page": [f"k{i}" for i in range(30, 50)],
                                                                         "cursor": None}


# --- a running service ---------------------------------------------------------------------------
def _iterate_under_churn(reader, writer, every: int) -> tuple[collections.Counter, dict]:
    """How often ``reader`` saw each key of ``d`` while ``writer`` churned it every ``every`` keys; the churn's state."""
    writer._conn.write({"op": "call", "path": [], "method": "update", "args": [{"d": _tree()}], "kwargs": {}})
    seed = random.randrange(1 << 30)
    print("seed", seed)
    rng, state = random.Random(seed), {"alive": [f"v{i}" for i in range(KEYS)], "new": 0}
    seen = []
    for key in reader["d"]:
        seen.append(key)
        if len(seen) % every == 0:
            _churn(writer["d"], rng, state, 5)
    return collections.Counter(seen), state


def test_proxy_iteration_while_another_client_deletes_and_inserts_has_every_stable_key_once(service):
    counts, state = _iterate_under_churn(service.empty_client(), service.client(), 50)
    assert state["new"] > 500 and max(counts.values()) == 1
    assert _stable() <= set(counts)


def test_dump_while_another_client_deletes_and_inserts_has_every_stable_key_once(service, tmp_path, monkeypatch):
    db, writer = service.empty_client(), service.client()
    db._conn.write({"op": "call", "path": [], "method": "update", "args": [_tree()], "kwargs": {}})
    monkeypatch.setattr(dump_cli, "READ_PAGE", 100)    # many pages, so many writes land between them
    seed = random.randrange(1 << 30)
    print("seed", seed)
    rng, state, done = random.Random(seed), {"alive": [f"v{i}" for i in range(KEYS)], "new": 0}, threading.Event()

    def churn() -> None:
        while not done.is_set():
            _churn(writer, rng, state, 1)
    thread = threading.Thread(target=churn)
    thread.start()
    try:
        assert dump_cli.dump(service.rw_uri, str(tmp_path / "d.msgpack")) == 0
    finally:
        done.set()
        thread.join()
    with open(tmp_path / "d.msgpack", "rb") as handle:
        keys = [record[0] for record, _ in list(read_records(handle, "msgpack"))[1:]]
    counts = collections.Counter(keys)
    assert state["new"] > 20 and max(counts.values()) == 1
    assert _stable() <= set(counts)


def test_async_iteration_pages_by_cursor(service):
    service.client()["async_d"] = dict.fromkeys(range(2500), 0)

    async def walk() -> list:
        db, _ = await async_client(service.rw_uri)
        try:
            return [key async for key in db["async_d"]]
        finally:
            await db.close()
    assert asyncio.run(walk()) == list(range(2500))


def test_hostile_cursors_get_clear_errors_and_the_server_keeps_serving(service):
    db = service.client()
    db["d"], db["other"] = dict.fromkeys(range(3000), 0), dict.fromkeys(range(3000), 0)
    read = db._conn.read
    good = read({"op": "iter", "path": ["d"], "cursor": None, "limit": 10})["cursor"]
    number, position, mac = good.split(".")
    forged = [f"{number}.{int(position) + 5}.{mac}", f"{number}.{position}.{'0' * 16}", "garbled", "1.2.3",
              "9" * 5000, 7, ["1", 2], {"a": 1}, b"1.10.0123456789abcdef"]
    for cursor in forged:
        with pytest.raises(CursorError):
            read({"op": "iter", "path": ["d"], "cursor": cursor, "limit": 10})
    with pytest.raises(CursorError):
        read({"op": "iter", "path": ["other"], "cursor": good, "limit": 10})    # another path
    with pytest.raises(QueryError):
        read({"op": "iter", "path": ["d"], "cursor": good, "limit": "all"})
    for _ in range(300):        # cursors opened in a loop, never read on
        read({"op": "iter", "path": ["d"], "cursor": None, "limit": 1})
    facts = db.status()
    assert facts["cursors"] <= 64 and facts["cursor_entries"] <= 64 * 2 * KEYS   # other tests' walks may stay
    with pytest.raises(CursorExpired):
        read({"op": "iter", "path": ["d"], "cursor": good, "limit": 10})
    before = read({"op": "iter", "path": ["d"], "cursor": None, "limit": 1})["cursor"]
    db["d"] = {"replaced": 1}
    with pytest.raises(CursorError, match="replaced"):
        read({"op": "iter", "path": ["d"], "cursor": before, "limit": 10})
    fresh = read({"op": "iter", "path": ["d"], "cursor": None, "limit": 10})
    assert fresh == {"page": ["replaced"], "cursor": None} and db["other"][2999]._run() == 0


def test_a_client_opening_cursors_in_a_loop_evicts_its_own_not_another_clients_walk(service):
    walker, looper = service.client(), service.client()
    walker["walked"], looper["small"] = dict.fromkeys(range(500), 0), {"a": 0, "b": 0}
    reply = walker._conn.read({"op": "iter", "path": ["walked"], "cursor": None, "limit": 100})
    seen = list(reply["page"])
    first_own = looper._conn.read({"op": "iter", "path": ["small"], "cursor": None, "limit": 1})["cursor"]
    opens = [{"op": "iter", "path": ["small"], "cursor": None, "limit": 1}] * 100
    looper._conn.read({"op": "batch", "ops": opens})          # 100 abandoned iterations in one request
    for _ in range(100):                                        # and one per request
        looper._conn.read({"op": "iter", "path": ["small"], "cursor": None, "limit": 1})
    while reply["cursor"] is not None:
        reply = walker._conn.read({"op": "iter", "path": ["walked"], "cursor": reply["cursor"], "limit": 100})
        seen += reply["page"]
    assert seen == list(range(500))
    with pytest.raises(CursorExpired):
        looper._conn.read({"op": "iter", "path": ["small"], "cursor": first_own, "limit": 1})
    assert walker.status()["cursors"] <= 64


def test_a_cursor_from_before_a_restart_is_refused(fresh_service):
    db = fresh_service.client()
    db["d"] = dict.fromkeys(range(100), 0)
    cursor = db._conn.read({"op": "iter", "path": ["d"], "cursor": None, "limit": 10})["cursor"]
    fresh_service.restart()
    with pytest.raises(CursorError):
        db._conn.read({"op": "iter", "path": ["d"], "cursor": cursor, "limit": 10})
    assert list(db["d"]) == list(range(100))


def test_old_clients_positional_start_still_pages_the_container_as_it_is_now(service):
    db = service.client()
    db["d"] = dict.fromkeys("abcdef", 0)
    read = db._conn.read
    assert read({"op": "iter", "path": ["d"], "start": 0, "limit": 3}) == ["a", "b", "c"]
    del db["d"]["a"]                                    # positions move up: the old form's documented skip
    assert read({"op": "iter", "path": ["d"], "start": 3, "limit": 3}) == ["e", "f"]
    assert read({"op": "iter", "path": ["d"], "start": 1, "limit": 2, "items": True}) == [["c", 0], ["d", 0]]


# --- replicas --------------------------------------------------------------------------------------
def test_iteration_by_a_client_with_replicas_is_exactly_once_and_a_replica_refuses_a_writers_cursor():
    # two replicas take turns on the read-only queue: pages sent there would reach one that never saw the cursor
    with Cluster(replicas=2) as cluster:
        writer, reader = cluster.client(), cluster.client(ro=True)
        counts, _ = _iterate_under_churn(reader, writer, 100)
        assert max(counts.values()) == 1 and _stable() <= set(counts)
        cursor = writer._conn.read({"op": "iter", "path": ["d"], "cursor": None, "limit": 10})["cursor"]
        on_replica = {"op": "iter", "path": ["d"], "cursor": cursor, "limit": 10}
        with pytest.raises(CursorError):
            reader._conn.read(on_replica, "eventual")
        own = reader._conn.read({"op": "iter", "path": ["d"], "cursor": None, "limit": 10}, "eventual")
        assert len(own["page"]) == 10 and own["cursor"] is not None


def test_a_root_whose_snapshot_is_over_max_work_is_refused_naming_the_flag(tmp_path, capsys):
    with EmbeddedService("--max-work", "5000") as svc:
        db = svc.client()
        for part in (range(3000), range(3000, 6000)):     # each update within the budget
            db._conn.write({"op": "call", "path": [], "method": "update", "args": [dict.fromkeys(part, 0)], "kwargs": {}})
        assert dump_cli.dump(svc.rw_uri, str(tmp_path / "d.jsonl")) == 1
        assert "--max-work" in capsys.readouterr().err and not (tmp_path / "d.jsonl").exists()
        with pytest.raises(RequestTooCostly):
            list(db)
        db["small"] = dict.fromkeys(range(2000), 0)         # under the budget: read by cursor as usual
        assert list(db["small"]) == list(range(2000))


def test_on_a_replica_a_client_opening_cursors_in_a_loop_evicts_its_own_not_another_clients_walk():
    # Before, the replica's engine was not told the client id: the looper's 201 opens at the 64-cursor bound
    # evicted the walker's cursor (CursorExpired mid-walk) as readily as the looper's own.
    with Cluster(replicas=1) as cluster:
        walker, looper = cluster.client(ro=True), cluster.client(ro=True)
        walker["walked"], looper["small"] = dict.fromkeys(range(500), 0), {"a": 0, "b": 0}
        read_walked = walker._conn.read      # read-your-writes: on the replica once it holds the write
        reply = read_walked({"op": "iter", "path": ["walked"], "cursor": None, "limit": 100})
        seen = list(reply["page"])
        first_own = looper._conn.read({"op": "iter", "path": ["small"], "cursor": None, "limit": 1})["cursor"]
        looper._conn.read({"op": "batch", "ops": [{"op": "iter", "path": ["small"], "cursor": None, "limit": 1}] * 100})
        for _ in range(100):
            looper._conn.read({"op": "iter", "path": ["small"], "cursor": None, "limit": 1})
        while reply["cursor"] is not None:     # a replica's cursor sent to the RW server would be refused
            reply = read_walked({"op": "iter", "path": ["walked"], "cursor": reply["cursor"], "limit": 100})
            seen += reply["page"]
        assert seen == list(range(500))
        with pytest.raises(CursorExpired):
            looper._conn.read({"op": "iter", "path": ["small"], "cursor": first_own, "limit": 1})
        replica = walker._conn.read({"op": "status"}, "eventual")
        assert replica["role"] == "ro" and replica["cursors"] == 64, replica
