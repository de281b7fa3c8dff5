"""Unit tests of the engine: every write's result, its inverse, and that failures change nothing."""
import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyzdb.errors import (
    Error,
    InvalidValue,
    MessageTooLarge,
    PathIndexError,
    PathKeyError,
    QueryError,
    ValueTypeError,
)
from pyzdb.transport import wire
from pyzdb.tree import budget
from pyzdb.tree import query as q
from pyzdb.tree.engine import Engine


def run(engine, query):
    return engine.execute(q.validate(query))


def call(path, method, *args, **kwargs):
    return {"op": "call", "path": path, "method": method, "args": list(args), "kwargs": kwargs}


def canonical(value):
    """``value`` with every scalar as its msgpack bytes (so True, 1 and 1.0 differ) and each dict's items sorted.

    Key order is left out: undoing a ``del`` puts the key back at the end of
    its dict (the same on every server, since the inverse is replayed).
    """
    if isinstance(value, dict):
        return ["map", sorted([wire.pack(k), canonical(v)] for k, v in value.items())]
    if isinstance(value, list):
        return ["array", [canonical(item) for item in value]]
    return wire.pack(value)


def same(a, b) -> bool:
    """Equal as stored, type for type: the same msgpack bytes once dict keys are sorted."""
    return wire.pack(canonical(a)) == wire.pack(canonical(b))


def check_undo(tree, query):
    """Apply a query, apply its inverse, and require the exact prior tree; return the outcome."""
    engine = Engine(copy.deepcopy(tree))
    outcome = run(engine, query)
    after = copy.deepcopy(engine.tree)
    engine.apply(outcome.inverse)
    assert same(engine.tree, tree), (engine.tree, tree)
    replayed = Engine(copy.deepcopy(tree))
    replayed.apply(outcome.forward)
    assert same(replayed.tree, after), (replayed.tree, after)
    return outcome, after


TREE = {"l": [0, 1, 2, 3, 4], "d": {"a": 1, "b": [1, 2]}, "s": "text", "n": 5}


@pytest.mark.parametrize("query, expected", [
    ({"op": "set", "path": ["l", 4], "value": ["a", "b"]}, [0, 1, 2, 3, ["a", "b"]]),
    ({"op": "set", "path": ["l", -1], "value": 9}, [0, 1, 2, 3, 9]),
    ({"op": "set", "path": ["l", [1, 3, None]], "value": ["x"]}, [0, "x", 3, 4]),
    ({"op": "set", "path": ["l", [None, None, 2]], "value": [7, 8, 9]}, [7, 1, 8, 3, 9]),
    ({"op": "set", "path": ["l", [None, None, -2]], "value": [7, 8, 9]}, [9, 1, 8, 3, 7]),
    ({"op": "del", "path": ["l", 0]}, [1, 2, 3, 4]),
    ({"op": "del", "path": ["l", [1, 3, None]]}, [0, 3, 4]),
    ({"op": "del", "path": ["l", [None, None, -2]]}, [1, 3]),
    (call(["l"], "append", "d"), [0, 1, 2, 3, 4, "d"]),
    (call(["l"], "extend", [5, 6]), [0, 1, 2, 3, 4, 5, 6]),
    (call(["l"], "insert", -2, "i"), [0, 1, 2, "i", 3, 4]),
    (call(["l"], "insert", 99, "i"), [0, 1, 2, 3, 4, "i"]),
    (call(["l"], "insert", -99, "i"), ["i", 0, 1, 2, 3, 4]),
    (call(["l"], "pop"), [0, 1, 2, 3]),
    (call(["l"], "pop", 1), [0, 2, 3, 4]),
    (call(["l"], "remove", 3), [0, 1, 2, 4]),
    (call(["l"], "sort", reverse=True), [4, 3, 2, 1, 0]),
    (call(["l"], "reverse"), [4, 3, 2, 1, 0]),
    (call(["l"], "clear"), []),
    ({"op": "iadd", "path": ["l"], "value": [7]}, [0, 1, 2, 3, 4, 7]),
])
def test_list_writes_and_their_inverses(query, expected):
    _, after = check_undo(TREE, query)
    assert after["l"] == expected


@pytest.mark.parametrize("query, expected", [
    ({"op": "set", "path": ["d", "c"], "value": 3}, {"a": 1, "b": [1, 2], "c": 3}),
    ({"op": "set", "path": ["d", 7], "value": 3}, {"a": 1, "b": [1, 2], 7: 3}),
    ({"op": "del", "path": ["d", "a"]}, {"b": [1, 2]}),
    (call(["d"], "pop", "a"), {"b": [1, 2]}),
    (call(["d"], "pop", "zz", 0), {"a": 1, "b": [1, 2]}),
    (call(["d"], "popitem"), {"a": 1}),
    (call(["d"], "setdefault", "c", []), {"a": 1, "b": [1, 2], "c": []}),
    (call(["d"], "setdefault", "a", 5), {"a": 1, "b": [1, 2]}),
    (call(["d"], "update", {"a": 2, "z": 0}), {"a": 2, "b": [1, 2], "z": 0}),
    (call(["d"], "update", q=1), {"a": 1, "b": [1, 2], "q": 1}),
    (call(["d"], "clear"), {}),
    (call(["d", "b"], "append", 3), {"a": 1, "b": [1, 2, 3]}),
])
def test_dict_writes_and_their_inverses(query, expected):
    _, after = check_undo(TREE, query)
    assert after["d"] == expected


def test_results_of_methods_are_returned():
    engine = Engine(copy.deepcopy(TREE))
    assert run(engine, call(["l"], "pop")).result == 4
    assert run(engine, call(["d"], "pop", "a")).result == 1
    assert run(engine, call(["d"], "setdefault", "a", 9)).result == 9
    assert run(engine, call(["d"], "setdefault", "a", 10)).result == 9
    assert run(engine, call(["l"], "index", 2)).result == 2
    assert run(engine, call(["l"], "count", 9)).result == 0
    assert run(engine, call(["d"], "keys")).result == ["b", "a"]
    assert run(engine, call(["d"], "items")).result == [["b", [1, 2]], ["a", 9]]
    assert run(engine, call(["d"], "get", "zz", 5)).result == 5
    assert run(engine, call(["s"], "upper")).result == "TEXT"
    assert run(engine, {"op": "len", "path": ["l"]}).result == 4
    assert run(engine, {"op": "contains", "path": ["d"], "value": "b"}).result is True
    assert run(engine, {"op": "contains", "path": ["l"], "value": 99}).result is False
    assert run(engine, {"op": "get", "path": ["l", [1, None, None]]}).result == [1, 2, 3]
    assert run(engine, {"op": "get", "path": ["s", 0]}).result == "t"
    assert run(engine, {"op": "iter", "path": ["l"], "start": 1, "limit": 2}).result == [1, 2]
    assert run(engine, {"op": "type", "path": ["d"]}).result == "dict"


def test_reads_have_no_inverse():
    outcome = run(Engine(copy.deepcopy(TREE)), {"op": "get", "path": ["l"]})
    assert not outcome.is_write and outcome.inverse == []


def test_increment_and_compare_and_set():
    outcome, after = check_undo(TREE, {"op": "iadd", "path": ["n"], "value": 2})
    assert outcome.result == 7 and after["n"] == 7
    _, after = check_undo(TREE, {"op": "iadd", "path": ["s"], "value": "!"})
    assert after["s"] == "text!"
    outcome, after = check_undo(TREE, {"op": "iadd", "path": ["new"], "value": 1, "create": True})
    assert after["new"] == 1
    outcome, after = check_undo(TREE, {"op": "cas", "path": ["n"], "expected": 5, "value": 6})
    assert outcome.result is True and after["n"] == 6
    outcome, after = check_undo(TREE, {"op": "cas", "path": ["n"], "expected": 4, "value": 6})
    assert outcome.result is False and after["n"] == 5 and not outcome.is_write


@pytest.mark.parametrize("query, error, message", [
    ({"op": "get", "path": ["nope"]}, PathKeyError, "db\\['nope'\\]: key 'nope' not found"),
    ({"op": "get", "path": ["l", 10]}, PathIndexError, "index 10 out of range"),
    ({"op": "get", "path": ["n", 0]}, ValueTypeError, "is a int; it has no item"),
    ({"op": "get", "path": ["d", "zz", 0]}, PathKeyError, "db\\['d'\\]\\['zz'\\]: key 'zz' not found"),
    ({"op": "get", "path": ["d", [0, 1, None]]}, ValueTypeError, "db\\['d'\\] is a dict; it cannot be sliced"),
    ({"op": "get", "path": ["d", "b", 2]}, PathIndexError, "db\\['d'\\]\\['b'\\]\\[2\\]: index 2 out of range"),
    ({"op": "set", "path": ["l", 10], "value": 1}, PathIndexError, "out of range"),
    ({"op": "set", "path": ["l", "x"], "value": 1}, ValueTypeError, "not an int"),
    ({"op": "set", "path": ["n", "x"], "value": 1}, ValueTypeError, "cannot be changed in place"),
    ({"op": "set", "path": ["l", [None, None, 2]], "value": [1]}, InvalidValue, "extended slice"),
    ({"op": "set", "path": ["l", [0, 2, None]], "value": "ab"}, ValueTypeError, "needs a list"),
    ({"op": "set", "path": ["l", [0, 2, None], 0], "value": 1}, QueryError, "through a slice"),
    ({"op": "del", "path": ["d", "zz"]}, PathKeyError, "not found"),
    ({"op": "iadd", "path": ["s"], "value": 1}, ValueTypeError, "cannot add int to str"),
    ({"op": "iadd", "path": ["zz"], "value": 1}, PathKeyError, "not found"),
    (call(["l"], "remove", 99), InvalidValue, "not in the list"),
    (call(["l"], "pop", 99), PathIndexError, "out of range"),
    (call(["l"], "insert", "x", 1), ValueTypeError, "not an int"),
    (call(["l"], "extend", 5), ValueTypeError, "needs a list"),
    (call(["l"], "append"), ValueTypeError, "takes 1 arguments"),
    (call(["l"], "sort", key="x"), QueryError, "no keyword 'key'"),
    (call(["d"], "update", [1]), ValueTypeError, "needs a dict"),
    (call(["d"], "pop", "zz"), PathKeyError, "not found"),
    (call(["n"], "append", 1), Error, "no allowed method"),
    (call(["s"], "append", 1), Error, "no allowed method"),
    (call(["l"], "index", 99), InvalidValue, "not in list"),
])
def test_failures_name_the_problem_and_change_nothing(query, error, message):
    engine = Engine(copy.deepcopy(TREE))
    with pytest.raises(error, match=message):
        run(engine, query)
    assert engine.tree == TREE


def test_sort_of_mixed_types_fails_and_leaves_the_list_as_it_was():
    engine = Engine({"l": [3, "a", 1]})
    with pytest.raises(ValueTypeError):
        run(engine, call(["l"], "sort"))
    assert engine.tree == {"l": [3, "a", 1]}


def test_batch_is_all_or_nothing():
    engine = Engine(copy.deepcopy(TREE))
    batch = {"op": "batch", "ops": [{"op": "set", "path": ["x"], "value": 1}, call(["l"], "append", 5),
                                    {"op": "get", "path": ["nope"]}]}
    with pytest.raises(PathKeyError, match="batch operation 2"):
        run(engine, batch)
    assert engine.tree == TREE
    batch["ops"].pop()
    outcome, after = check_undo(TREE, batch)
    assert outcome.result == [None, None] and after["x"] == 1 and after["l"][-1] == 5


def test_a_read_in_a_batch_answers_the_value_as_it_was_before_later_writes():
    engine = Engine({"x": [1], "m": {"a": 1}})
    batch = {"op": "batch", "ops": [{"op": "get", "path": ["x"]}, call(["x"], "append", 2),
                                    {"op": "get", "path": ["m"]}, {"op": "set", "path": ["m", "b"], "value": 2},
                                    {"op": "get", "path": ["x"]}]}
    assert run(engine, batch).result == [[1], None, {"a": 1}, None, [1, 2]]


def test_setdefault_in_a_batch_answers_the_stored_value_as_it_was_before_later_writes():
    engine = Engine({"m": {"k": [1]}})
    batch = {"op": "batch", "ops": [call(["m"], "setdefault", "k", []), call(["m", "k"], "append", 2),
                                    call(["m"], "setdefault", "n", {}), {"op": "set", "path": ["m", "n", "a"], "value": 1}]}
    assert engine.run(batch, packed=True).result == [[1], None, {}, None]
    assert engine.tree == {"m": {"k": [1, 2], "n": {"a": 1}}}


def test_a_batch_whose_copies_of_reads_pass_the_reply_limit_is_refused_and_undone():
    engine = Engine({"v": [b"x" * 1000], "n": 0})
    ops = [{"op": "set", "path": ["n"], "value": 1}] + [{"op": "get", "path": ["v"]}] * 50 + [
        {"op": "set", "path": ["w"], "value": 1}]
    with pytest.raises(MessageTooLarge, match="batch operation 10: .* over the limit of 10,000 bytes"):
        engine.run({"op": "batch", "ops": ops}, max_reply=10_000)
    assert engine.tree == {"v": [b"x" * 1000], "n": 0}
    assert len(engine.run({"op": "batch", "ops": ops}, max_reply=60_000).result) == 52


def test_a_batch_counts_the_copy_of_a_read_before_a_write_by_its_size():
    tree = {"small": [b"x"], "big": [b"x" * (1 << 20)]}
    units = [budget.cost(Engine(tree).resolve, {"op": "batch", "ops": [{"op": "get", "path": [name]},
                                                                       {"op": "set", "path": ["w"], "value": 1}]})
             for name in ("small", "big")]
    assert units[1] - units[0] >= (1 << 20) // 16


def test_iadd_on_a_slice_is_a_slice_assignment_and_undoes():
    outcome, after = check_undo({"l": [1, 2, 3, 4]}, {"op": "iadd", "path": ["l", [1, 3, None]], "value": [9]})
    assert after == {"l": [1, 2, 3, 9, 4]} and outcome.result == 3
    outcome, after = check_undo({"l": [[], None]}, {"op": "iadd", "path": ["l", [None, None, None]], "value": []})
    assert after == {"l": [[], None]}
    with pytest.raises(ValueTypeError, match="list slice"):
        run(Engine({"l": [1]}), {"op": "iadd", "path": ["l", [0, 1, None]], "value": 5})


def test_stored_values_are_not_shared_with_the_query():
    engine = Engine({})
    query = {"op": "set", "path": ["x"], "value": [1, 2]}
    run(engine, query)
    run(engine, call(["x"], "append", 3))
    assert query["value"] == [1, 2]


# --- property: apply then undo returns the exact prior tree, for random operations --------
scalars = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), st.text(max_size=3), st.binary(max_size=3))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=2), st.integers(0, 5)), inner, max_size=4)),
    max_leaves=12)
trees = st.dictionaries(st.text(max_size=2), values, max_size=5)


def containers(node, path=()):
    if isinstance(node, (list, dict)):
        yield list(path), node
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in items:
            yield from containers(child, path + (key,))


def random_query(data, tree):
    """A random write at a random container of ``tree``: only the chosen operation's arguments are drawn."""
    draw = data.draw
    path, node = draw(st.sampled_from(list(containers(tree))))
    index = st.integers(-len(node) - 2, len(node) + 2) if isinstance(node, list) else None
    key = draw(st.sampled_from(list(node)) if node and draw(st.booleans()) else
               (index if index is not None else st.text(max_size=2)))

    def value():
        return draw(values)

    if isinstance(node, list):
        bound = st.one_of(st.none(), st.integers(-6, 6))

        def piece():
            return [draw(bound), draw(bound), draw(st.sampled_from([None, 1, 2, -1, -2]))]

        choices = [
            lambda: {"op": "set", "path": path + [key], "value": value()}, lambda: {"op": "del", "path": path + [key]},
            lambda: {"op": "set", "path": path + [piece()], "value": draw(st.lists(values, max_size=3))},
            lambda: {"op": "del", "path": path + [piece()]},
            lambda: call(path, "append", value()), lambda: call(path, "extend", draw(st.lists(values, max_size=3))),
            lambda: call(path, "insert", draw(index), value()), lambda: call(path, "pop"),
            lambda: call(path, "pop", draw(index)),
            lambda: call(path, "remove", value() if not node else draw(st.sampled_from(node))),
            lambda: call(path, "sort", reverse=draw(st.booleans())), lambda: call(path, "reverse"),
            lambda: call(path, "clear"),
            lambda: {"op": "iadd", "path": path + [key],
                     "value": draw(st.one_of(st.integers(-5, 5), st.lists(scalars, max_size=2)))},
            lambda: {"op": "truncate", "path": path, "length": draw(st.integers(0, 6))},
        ]
    else:
        choices = [
            lambda: {"op": "set", "path": path + [key], "value": value()}, lambda: {"op": "del", "path": path + [key]},
            lambda: call(path, "pop", key), lambda: call(path, "popitem"),
            lambda: call(path, "setdefault", key, value()),
            lambda: call(path, "update", draw(st.dictionaries(st.text(max_size=2), values, max_size=3))),
            lambda: call(path, "clear"), lambda: {"op": "cas", "path": path + [key], "expected": value(), "value": 1},
        ]
    choices += [   # str, bytes and list values: += appends, its inverse truncates; truncate's appends back
        lambda: {"op": "iadd", "path": path + [key], "value": draw(st.one_of(st.text(max_size=3), st.binary(max_size=3)))},
        lambda: {"op": "truncate", "path": path + [key], "length": draw(st.integers(0, 4))},
    ]
    return draw(st.sampled_from(choices))()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees, data=st.data())
def test_random_writes_then_undo_return_the_exact_prior_tree(tree, data):
    """Undo every write in reverse, then redo every one in order: each step gives back the tree it had."""
    engine = Engine(copy.deepcopy(tree))
    states, inverses, forwards = [copy.deepcopy(tree)], [], []
    for _ in range(data.draw(st.integers(1, 8))):
        query = random_query(data, engine.tree)
        before = copy.deepcopy(engine.tree)
        try:
            outcome = run(engine, query)
        except Error:
            assert same(engine.tree, before), f"failed {query} changed the tree"
            continue
        inverses.append(outcome.inverse)
        forwards.append(outcome.forward)
        states.append(copy.deepcopy(engine.tree))
    for index in reversed(range(len(inverses))):
        engine.apply(inverses[index])
        assert same(engine.tree, states[index]), (engine.tree, states[index])
    assert same(engine.tree, tree), (engine.tree, tree)
    for index, forward in enumerate(forwards):
        engine.apply(forward)
        assert same(engine.tree, states[index + 1]), (engine.tree, states[index + 1])


def test_a_batch_of_gets_returns_every_value_or_names_the_failing_one():
    engine = Engine(copy.deepcopy(TREE))
    batch = {"op": "batch", "ops": [{"op": "get", "path": ["n"]}, {"op": "get", "path": ["l", -1]}]}
    assert run(engine, batch).result == [5, 4]
    batch["ops"].append({"op": "get", "path": ["d", "zz"]})
    with pytest.raises(PathKeyError, match="batch operation 2: .*'zz' not found"):
        run(engine, batch)


def test_update_stores_keys_that_are_not_the_interned_decoded_ones():
    import sys

    from pyzdb.transport.wire import pack, unpack
    decoded = unpack(pack({"a-key-loaded-by-update": 1, "\u00e9t\u00e9": 2}))
    engine = Engine()
    engine.execute({"op": "call", "path": [], "method": "update", "args": [decoded]})
    assert engine.tree == decoded
    for key in engine.tree:   # the decoded keys are interned; the tree's are copies, so they can be freed
        assert sys.intern(key) is not key
