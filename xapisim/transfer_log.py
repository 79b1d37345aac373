"""The pool's own record of the transfers it served: one interval per HTTP export or import
and per NBD connection, with the host that served it (a test reads it through the control
API, `transfer_log`, to measure how many streams a host served at once, independently of
the client's counters)."""

import threading
import time
import urllib.parse

KEEP = 100_000          # the oldest intervals are dropped past this many


class TransferLog:
    def __init__(self):
        self._lock = threading.Lock()
        self._entries: dict[int, dict] = {}
        self._next = 1

    def start(self, kind: str, host: str, target: str = "") -> int:
        """Open an interval; ``host`` is the serving host's uuid. Returns its id for ``end``."""
        with self._lock:
            entry_id = self._next
            self._next += 1
            self._entries[entry_id] = {"id": entry_id, "kind": kind, "host": host, "target": target,
                                       "start": time.time(), "end": None}
            while len(self._entries) > KEEP:
                del self._entries[next(iter(self._entries))]
            return entry_id

    def end(self, entry_id: int) -> None:
        with self._lock:
            entry = self._entries.get(entry_id)
            if entry is not None and entry["end"] is None:
                entry["end"] = time.time()

    def entries(self) -> list[dict]:
        with self._lock:
            return [dict(e) for e in self._entries.values()]

    def clear(self) -> int:
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
            return count


def start_http(handler, query: dict) -> int:
    """Open the interval of an HTTP transfer served by ``handler``'s host."""
    sim = handler.sim
    with sim.db.lock:
        host = sim.db.get("host", handler.host)["uuid"]
    path = urllib.parse.urlsplit(handler.path).path
    target = query.get("ref") or query.get("uuid") or query.get("vdi") or query.get("sr_id") or ""
    return sim.transfer_log.start(path, host, target)
