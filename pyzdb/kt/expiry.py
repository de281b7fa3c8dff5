"""Expire times as ukt takes them, turned into Kyoto Tycoon's wire ``xt``.

>>> wire_xt(60), wire_xt(None) == XT_NEVER, wire_xt(1_900_000_000)
(60, True, -1900000000)
"""
from __future__ import annotations

import datetime

from pyzdb.errors import ValueTypeError
from pyzdb.kt.protocol import XT_MAX, XT_NEVER

XT_CUTOFF = 86400 * 180
"""A number of seconds this large or larger is an absolute unix time, as in ukt."""



def wire_xt(expire_time: int | float | datetime.datetime | datetime.timedelta | None) -> int:
    """The ``xt`` to send for ``expire_time``.

    None: never. A ``datetime``: that moment (a naive one is local time). A
    ``timedelta`` or a number under 180 days: that many seconds from now. A
    number of 180 days or more: an absolute unix time. A negative number:
    minus an absolute unix time, passed through as the wire takes it.
    """
    if expire_time is None:
        return XT_NEVER
    if isinstance(expire_time, datetime.datetime):
        return -int(expire_time.timestamp())
    if isinstance(expire_time, datetime.timedelta):
        return int(expire_time.total_seconds())
    if isinstance(expire_time, bool) or not isinstance(expire_time, (int, float)):
        raise ValueTypeError(f"expire_time must be a number, datetime, timedelta or None, "
                             f"not {type(expire_time).__name__}")
    if expire_time >= XT_MAX:
        return XT_NEVER
    if expire_time >= XT_CUTOFF:
        return -int(expire_time)
    return int(expire_time)
