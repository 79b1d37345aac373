"""XML-RPC marshalling the way xapi does it.

xapi sends 64-bit ints as strings and datetimes as ``YYYYMMDDTHH:MM:SSZ``. The stdlib
``xmlrpc.client.dumps`` refuses ints >= 2**31 and drops the ``Z``, and it is slow for
``VM.get_all_records`` on thousands of VMs, so responses are built here with a small
recursive writer that appends to one list of string pieces.
"""

import time
import xmlrpc.client
from xml.sax.saxutils import escape as _escape


class Timestamp(str):
    """A datetime field value, already in xapi's wire form ``20240101T12:00:00Z``."""

    @classmethod
    def now(cls) -> "Timestamp":
        return cls(time.strftime("%Y%m%dT%H:%M:%SZ", time.gmtime()))

    @classmethod
    def at(cls, seconds: float) -> "Timestamp":
        return cls(time.strftime("%Y%m%dT%H:%M:%SZ", time.gmtime(seconds)))


EPOCH = Timestamp("19700101T00:00:00Z")

_ESCAPE_NEEDED = set("&<>")


def _text(s: str) -> str:
    # Most values (refs, uuids, names) need no escaping; checking first is much faster.
    for ch in s:
        if ch in _ESCAPE_NEEDED:
            return _escape(s)
    return s


def _write(value, out: list) -> None:
    t = type(value)
    if t is str:
        out.append("<value>")
        out.append(_text(value))
        out.append("</value>")
    elif t is dict:
        out.append("<value><struct>")
        for k, v in value.items():
            out.append("<member><name>")
            out.append(_text(str(k)))
            out.append("</name>")
            _write(v, out)
            out.append("</member>")
        out.append("</struct></value>")
    elif t is list or t is tuple:
        out.append("<value><array><data>")
        for v in value:
            _write(v, out)
        out.append("</data></array></value>")
    elif t is bool:
        out.append("<value><boolean>1</boolean></value>" if value else "<value><boolean>0</boolean></value>")
    elif t is int:
        out.append("<value>%d</value>" % value)
    elif t is float:
        out.append("<value><double>%r</double></value>" % value)
    elif t is Timestamp:
        out.append("<value><dateTime.iso8601>")
        out.append(value)
        out.append("</dateTime.iso8601></value>")
    elif value is None:
        out.append("<value></value>")
    elif isinstance(value, str):
        out.append("<value>")
        out.append(_text(str(value)))
        out.append("</value>")
    else:
        raise TypeError("cannot marshal %r" % (t,))


def value_fragment(value) -> str:
    """One ``<value>`` element, as stored in ``task.result`` and written to ova.xml."""
    out: list = []
    _write(value, out)
    return "".join(out)


def response(value) -> bytes:
    """A complete methodResponse carrying ``value`` (the Status struct)."""
    out = ['<?xml version="1.0"?>\n<methodResponse><params><param>']
    _write(value, out)
    out.append("</param></params></methodResponse>\n")
    return "".join(out).encode("utf-8")


def success(value) -> dict:
    return {"Status": "Success", "Value": value}


def failure(error: list) -> dict:
    return {"Status": "Failure", "ErrorDescription": [str(p) for p in error]}


def parse_request(body: bytes) -> tuple[str, tuple]:
    """(method name, params); raises ValueError on malformed XML."""
    try:
        params, method = xmlrpc.client.loads(body, use_builtin_types=False)
    except Exception as e:  # expat errors, ResponseError, ...
        raise ValueError(str(e)) from e
    if not method:
        raise ValueError("no methodName")
    return method, tuple(_plain(p) for p in params)


def parse_value(fragment: str):
    """Parse one ``<value>`` element (ova.xml body, task result)."""
    doc = "<?xml version='1.0'?><methodResponse><params><param>%s</param></params></methodResponse>" % fragment
    (value,), _ = xmlrpc.client.loads(doc, use_builtin_types=False)
    return _plain(value)


def _plain(v):
    # Dates parsed from requests/ova.xml become our Timestamp type so they round-trip.
    if isinstance(v, xmlrpc.client.DateTime):
        s = v.value
        return Timestamp(s if s.endswith("Z") else s + "Z")
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v
