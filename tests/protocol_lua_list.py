"""The List and Queue procedures of pyzdb/kt/scripts/pyzdb.lua, in Python for the protocol test server."""
from __future__ import annotations

from protocol_lua import _load, _num, _store, arraydump, arrayload, procedure, record_proc

_list_proc = record_proc(b"key", arrayload, arraydump)


def _ordered(inmap):
    values, i = [], 0
    while str(i).encode() in inmap:
        values.append(inmap[str(i).encode()])
        i += 1
    return values


def _position(inmap, n, allow_end=False):
    i = int(inmap[b"index"])
    i = i + n if i < 0 else i
    return i if 0 <= i <= (n if allow_end else n - 1) else None


@_list_proc
def llpush(inmap, items):
    items.insert(0, inmap[b"value"])
    return _num(len(items), b"length")


@_list_proc
def lrpush(inmap, items):
    items.append(inmap[b"value"])
    return _num(len(items), b"length")


@_list_proc
def lextend(inmap, items):
    items.extend(_ordered(inmap))
    return _num(len(items), b"length")


@_list_proc
def lrange(inmap, items):
    start, stop = int(inmap.get(b"start", b"0")), int(inmap.get(b"stop", str(len(items)).encode()))
    return {str(i).encode(): v for i, v in enumerate(items[start:stop])}


@_list_proc
def lindex(inmap, items):
    i = _position(inmap, len(items))
    return {} if i is None else {b"value": items[i]}


@_list_proc
def linsert(inmap, items):
    i = _position(inmap, len(items), True)
    if i is None:
        return {}
    items.insert(i, inmap[b"value"])
    return _num(len(items), b"length")


@_list_proc
def lrem(inmap, items):
    i = _position(inmap, len(items))
    return {} if i is None else {b"value": items.pop(i)}


@_list_proc
def lset(inmap, items):
    i = _position(inmap, len(items))
    if i is None:
        return {}
    items[i] = inmap[b"value"]
    return _num(1)


@_list_proc
def llpop(inmap, items):
    return {b"value": items.pop(0)} if items else {}


@_list_proc
def lrpop(inmap, items):
    return {b"value": items.pop()} if items else {}


@_list_proc
def lremrange(inmap, items):
    start, stop = int(inmap.get(b"start", b"0")), int(inmap.get(b"stop", str(len(items)).encode()))
    del items[start:stop]
    return _num(len(items), b"length")


def _dest(inmap):
    return {b"db": inmap.get(b"db", b"0"), b"key": inmap[b"dest"]}


def _poppush(inmap, data, from_head):
    items = _load(inmap, data, b"key", arrayload)
    if not items:
        return {}
    value = items.pop(0 if from_head else -1)
    _store(inmap, data, b"key", items, arraydump)
    dest = _load(_dest(inmap), data, b"key", arrayload)
    dest.insert(len(dest) if from_head else 0, value)
    _store(_dest(inmap), data, b"key", dest, arraydump)
    return {b"value": value}


@procedure
def llpoprpush(inmap, data):
    return _poppush(inmap, data, True)


@procedure
def lrpoplpush(inmap, data):
    return _poppush(inmap, data, False)


@_list_proc
def llen(inmap, items):
    return _num(len(items))


@_list_proc
def lfind(inmap, items):
    return _num(items.index(inmap[b"value"]) if inmap[b"value"] in items else -1, b"index")


@_list_proc
def lrfind(inmap, items):
    found = [i for i, v in enumerate(items) if v == inmap[b"value"]]
    return _num(found[-1] if found else -1, b"index")


# --- Queue: an arraydump of b"score\titem" in leaving order --------------------------------------
def _entry(e):
    score, _, item = e.partition(b"\t")
    return int(score), item


def _enqueue(items, score, item):
    at = next((i for i, e in enumerate(items) if _entry(e)[0] < score), len(items))
    items.insert(at, b"%d\t%s" % (score, item))


@_list_proc
def queue_add(inmap, items):
    score = int(inmap.get(b"score", b"0"))
    for item in _ordered(inmap):
        _enqueue(items, score, item)
    return _num(len(items))


def _take(inmap, items, from_end, remove):
    want, low = int(inmap.get(b"n", b"1")), inmap.get(b"min_score")
    order = range(len(items) - 1, -1, -1) if from_end else range(len(items))
    taken = [i for i in order if low is None or _entry(items[i])[0] >= int(low)][:want]
    out = {str(j).encode(): _entry(items[i])[1] for j, i in enumerate(taken)}
    if remove:
        items[:] = [e for i, e in enumerate(items) if i not in set(taken)]
    return out


@_list_proc
def queue_pop(inmap, items):
    return _take(inmap, items, False, True)


@_list_proc
def queue_rpop(inmap, items):
    return _take(inmap, items, True, True)


@_list_proc
def queue_peek(inmap, items):
    return _take(inmap, items, False, False)


@_list_proc
def queue_rpeek(inmap, items):
    return _take(inmap, items, True, False)


@_list_proc
def queue_count(inmap, items):
    return _num(len(items))


def _matching(inmap, items):
    """The entries equal to inmap[b"0"] (up to n, from the head or with from_end the tail), and the others."""
    limit = int(inmap.get(b"n", b"-1"))
    order = range(len(items) - 1, -1, -1) if b"from_end" in inmap else range(len(items))
    hits = [i for i in order if _entry(items[i])[1] == inmap[b"0"]]
    hits = set(hits if limit < 0 else hits[:limit])
    return [items[i] for i in sorted(hits)], [e for i, e in enumerate(items) if i not in hits]


@_list_proc
def queue_remove(inmap, items):
    found, items[:] = _matching(inmap, items)
    return _num(len(found))


@_list_proc
def queue_set_priority(inmap, items):
    found, items[:] = _matching(inmap, items)
    for e in found:
        _enqueue(items, int(inmap[b"score"]), _entry(e)[1])
    return _num(len(found))


@procedure
def queue_transfer(inmap, data):
    items = _load(inmap, data, b"key", arrayload)
    moved, items[:] = items[:int(inmap.get(b"n", b"1"))], items[int(inmap.get(b"n", b"1")):]
    _store(inmap, data, b"key", items, arraydump)
    dest = _load(_dest(inmap), data, b"key", arrayload)
    for e in moved:
        _enqueue(dest, *_entry(e))
    _store(_dest(inmap), data, b"key", dest, arraydump)
    return {str(i).encode(): _entry(e)[1] for i, e in enumerate(moved)}


@_list_proc
def queue_clear(inmap, items):
    n = len(items)
    items.clear()
    return _num(n)


@_list_proc
def schedule_add(inmap, items):
    score = int(inmap.get(b"score", b"0"))
    for item in _ordered(inmap):
        at = next((i for i, e in enumerate(items) if _entry(e)[0] > score), len(items))
        items.insert(at, b"%d\t%s" % (score, item))
    return _num(len(items))


@_list_proc
def schedule_read(inmap, items):
    limit, upto = int(inmap.get(b"n", b"-1")), inmap.get(b"score")
    due = [i for i, e in enumerate(items) if upto is None or _entry(e)[0] <= int(upto)]
    due = due if limit < 0 else due[:limit]
    out = {str(j).encode(): _entry(items[i])[1] for j, i in enumerate(due)}
    if b"remove" in inmap:
        items[:] = [e for i, e in enumerate(items) if i not in set(due)]
    return out
