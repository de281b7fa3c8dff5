"""A proxy acts like its value in Python expressions; setdefault writes through; the client closes."""
import copy
import math
import operator

import pytest

from pyzdb.client import client
from pyzdb.errors import ClientClosed, MethodNotAllowed

BINARY = [operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv, operator.mod,
          divmod, pow, operator.lshift, operator.rshift, operator.and_, operator.or_, operator.xor,
          operator.lt, operator.le, operator.gt, operator.ge, operator.eq, operator.ne]
UNARY = [operator.neg, operator.pos, abs, operator.invert, bool, int, float, complex, operator.index,
         math.trunc, math.floor, math.ceil, round]


@pytest.mark.parametrize("op", BINARY, ids=lambda op: op.__name__)
def test_binary_operators_forward_and_reflected_give_what_the_value_gives(db, op):
    db["n"] = 7
    assert op(db["n"], 3) == op(7, 3)
    assert op(3, db["n"]) == op(3, 7)       # reflected: 3 - x, 3 * x, 2 ** x ...
    db["m"] = 2
    assert op(db["n"], db["m"]) == op(7, 2)  # two proxies


@pytest.mark.parametrize("op", UNARY, ids=lambda op: op.__name__)
def test_unary_operators_and_conversions_give_what_the_value_gives(db, op):
    db["n"] = -7
    assert op(db["n"]) == op(-7)


def test_a_proxy_works_where_python_wants_an_int_or_a_format(db):
    db["n"] = 5
    db["f"] = 3.14159
    assert list(range(db["n"])) == [0, 1, 2, 3, 4]
    assert [10, 20, 30, 40, 50, 60][db["n"]] == 60
    assert f"{db['n']:5d}|{db['f']:.2f}" == "    5|3.14"
    assert round(db["f"], 2) == 3.14 and pow(db["n"], 2, 3) == pow(5, 2, 3)
    db["s"] = "ab"
    assert db["s"] * 2 == "abab" and 2 * db["s"] == "abab" and "x" + db["s"] == "xab"


def test_copy_and_deepcopy_give_the_value_not_a_proxy(db):
    db["l"] = [1, [2, 3]]
    shallow, deep = copy.copy(db["l"]), copy.deepcopy(db["l"])
    assert type(shallow) is list and type(deep) is list and deep == [1, [2, 3]]
    deep[1].append(4)
    assert db["l"]._run() == [1, [2, 3]]
    assert list(reversed(db["l"])) == [[2, 3], 1]


def test_setdefault_returns_the_member_so_writes_through_it_land(db):
    db["d"] = {}
    db["d"].setdefault("z", []).append(1)
    db["d"].setdefault("z", []).append(2)
    assert db["d"]._run() == {"z": [1, 2]}
    assert db["d"].setdefault("n", 5) == 5     # a scalar comes back as the value


def test_sort_takes_key_none_and_refuses_a_key_function(db):
    db["l"] = [3, 1, 2]
    db["l"].sort(key=None, reverse=True)
    assert db["l"]._run() == [3, 2, 1]
    with pytest.raises(TypeError):
        db["l"].sort(key=len)


def test_method_errors_list_the_methods_of_the_values_own_type(db):
    db["x"] = 1
    db["s"] = "text"
    with pytest.raises(AttributeError) as caught:
        db["x"].foo()
    assert "(int)" in str(caught.value) and "upper" not in str(caught.value)
    with pytest.raises(MethodNotAllowed) as caught:
        db["x"].upper()
    assert "int" in str(caught.value) and "allowed: none" in str(caught.value)
    with pytest.raises(AttributeError) as caught:
        db["s"].foo()
    assert "upper" in str(caught.value) and "append" not in str(caught.value)
    with pytest.raises(MethodNotAllowed, match="allowed: .*append"):
        db["l"] = []
        db["l"].upper()


def test_close_closes_and_later_requests_say_so(service):
    db, socket = client(service.rw_uri, timeout=5)
    db["x"] = 1
    assert not socket.closed and socket.client_id
    socket.close()
    assert socket.closed
    with pytest.raises(ClientClosed):
        db["x"]._run()
    db.close()          # idempotent


def test_with_client_closes_on_exit(service):
    with client(service.rw_uri, timeout=5) as (db, socket):
        db["y"] = 2
        assert db["y"] == 2
    assert socket.closed
    with pytest.raises(ClientClosed):
        db["y"]._run()
    db2, _ = client(service.rw_uri, timeout=5)
    db2.close()
