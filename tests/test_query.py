"""Unit tests of query validation: shapes, limits and the method allow-list."""
import msgpack
import pytest

from pyzdb.errors import MethodNotAllowed, QueryError, ValueTypeError
from pyzdb.tree import query as q


def test_valid_call_query_is_accepted():
    query = {"op": "call", "path": ["l", 4], "method": "append", "args": ["d"]}
    assert q.validate(query)["kwargs"] == {}


@pytest.mark.parametrize("method", ["__class__", "__import__", "system", "mro", "__init__", "__globals__",
                                     "__reduce__", "format", "__getattribute__", "eval"])
def test_methods_outside_the_allow_list_are_refused(method):
    with pytest.raises(MethodNotAllowed, match=repr(method)):
        q.validate({"op": "call", "path": [], "method": method, "args": []})


def test_method_must_be_a_string():
    with pytest.raises(MethodNotAllowed):
        q.validate({"op": "call", "path": [], "method": ["append"]})


@pytest.mark.parametrize("query, message", [
    ({"op": "exec", "path": []}, "unknown operation"),
    ({"op": "get", "path": "x"}, "path must be a list"),
    ({"op": "get", "path": [True]}, "bool"),
    ({"op": "get", "path": [1.5]}, "float"),
    ({"op": "get", "path": [[1, 2]]}, "slice step"),
    ({"op": "get", "path": [[1, 2, 0]]}, "cannot be zero"),
    ({"op": "set", "path": ["x"]}, "needs the field 'value'"),
    ({"op": "set", "path": [], "value": 1}, "root"),
    ({"op": "del", "path": []}, "root"),
    ({"op": "batch", "ops": []}, "non-empty"),
    ({"op": "batch", "ops": [{"op": "batch", "ops": [{"op": "get", "path": []}]}]}, "another batch"),
    ({"op": "batch", "ops": [{"op": "lock"}]}, "cannot run inside a batch"),
    ({"op": "call", "path": [], "method": "get", "args": "x"}, "args"),
    ("not a map", "must be a map"),
])
def test_malformed_queries_name_the_problem(query, message):
    with pytest.raises(QueryError, match=message):
        q.validate(query)


@pytest.mark.parametrize("path, error, message", [
    ("x", QueryError, "path must be a list"),
    ([True], QueryError, "bool"),
    ([1.5], QueryError, "float"),
    ([[1, 2]], QueryError, "slice step"),
    ([[1, 2, 0]], QueryError, "cannot be zero"),
    (["k" * (q.MAX_KEY_LENGTH + 1)], QueryError, "over the limit"),
    (["k"] * (q.MAX_PATH_DEPTH + 1), QueryError, "deeper than the limit"),
])
def test_a_batch_of_gets_checks_each_path_as_a_lone_get_does(path, error, message):
    with pytest.raises(error, match=message):
        q.validate({"op": "get", "path": path})
    ops = [{"op": "get", "path": ["ok", 1, [None, 2, None]]}, {"op": "get", "path": path}]
    with pytest.raises(error, match=message):
        q.validate({"op": "batch", "ops": ops})


def test_a_get_in_a_batch_with_extra_fields_is_checked_in_full():
    with pytest.raises(ValueTypeError):
        q.validate({"op": "batch", "ops": [{"op": "get", "path": ["k"], "value": object()}]})
    assert q.validate({"op": "batch", "ops": [{"op": "get"}]})["ops"] == [{"op": "get", "path": []}]


def test_path_depth_limit():
    with pytest.raises(QueryError, match="deeper than the limit"):
        q.validate({"op": "get", "path": ["k"] * (q.MAX_PATH_DEPTH + 1)})
    q.validate({"op": "get", "path": ["k"] * q.MAX_PATH_DEPTH})


def test_batch_size_limit():
    with pytest.raises(QueryError, match="over the limit"):
        q.validate({"op": "batch", "ops": [{"op": "get", "path": []}] * (q.MAX_BATCH + 1)})


@pytest.mark.parametrize("value", [{(1, 2): 3}, {1.5: 1}, {True: 1}, msgpack.ExtType(7, b"x"), object()])
def test_values_the_tree_cannot_hold_are_refused(value):
    with pytest.raises(ValueTypeError):
        q.check_value(value)


def test_value_depth_limit():
    value = []
    for _ in range(q.MAX_VALUE_DEPTH + 5):
        value = [value]
    with pytest.raises(ValueTypeError, match="nested deeper"):
        q.check_value(value)


def test_a_message_nested_past_the_decoders_stack_is_refused_as_a_protocol_error():
    from pyzdb.errors import ProtocolError
    from pyzdb.transport import wire
    deep = b"\x91" * 5000 + b"\x00"               # 5000 nested one-item arrays
    with pytest.raises(ProtocolError, match="not valid msgpack"):
        wire.unpack(deep)
    with pytest.raises(ProtocolError):
        wire.decode_request(b"\x84\xa1v\x01\xa3cid\xc4\x01c\xa3rid\x01\xa1q" + deep)


def test_format_path_reads_like_python():
    assert q.format_path(["l", 4, [1, None, None], [None, None, -1]]) == "db['l'][4][1:][::-1]"


def test_method_kind_depends_on_the_type():
    assert q.method_kind([], "append", []) == "write"
    assert q.method_kind({}, "pop", []) == "write"
    assert q.method_kind({}, "keys", []) == "read"
    assert q.method_kind("s", "upper", []) == "read"
    with pytest.raises(MethodNotAllowed, match="int at db\\['x'\\] has no allowed method 'append'"):
        q.method_kind(3, "append", ["x"])
    with pytest.raises(MethodNotAllowed):
        q.method_kind("s", "append", [])
