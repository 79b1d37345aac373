"""The object database: records by class and ref, a uuid index, change generations for
event.from, and persistence to one JSON file.

One re-entrant lock guards everything; ``changed`` (a Condition on that lock) wakes
event.from waiters. Like xapi, event.from works from per-object generation numbers rather
than an unbounded event log: an object modified after generation N is reported as ``mod``
(or ``add`` if it was created after N); deletions are kept in a short bounded list.
"""

import collections
import copy
import json
import os
import threading
import uuid as uuidlib

from .errors import XapiError, handle_invalid
from .records import CLASSES, DATETIME_FIELDS, new_record
from .xmlrpc import Timestamp

# Classes never written to disk: xapi forgets sessions and tasks when it restarts.
VOLATILE = {"session", "task"}
MAX_DELETIONS = 100_000


def new_ref() -> str:
    return "OpaqueRef:" + str(uuidlib.uuid4())


def new_uuid() -> str:
    return str(uuidlib.uuid4())


class Database:
    def __init__(self):
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.objects: dict[str, dict[str, dict]] = {c: {} for c in CLASSES}
        self.by_uuid: dict[str, dict[str, str]] = {c: {} for c in CLASSES}
        self.generation = 0
        self.created_at: dict[str, int] = {}   # ref -> generation of creation
        self.modified_at: dict[str, int] = {}  # ref -> generation of last change
        self.deletions = collections.deque(maxlen=MAX_DELETIONS)  # (gen, cls, ref, record)
        self.dirty = False

    # -- reading ---------------------------------------------------------------------
    def get(self, cls: str, ref: str) -> dict:
        try:
            return self.objects[cls][ref]
        except KeyError:
            raise handle_invalid(cls, ref) from None

    def exists(self, cls: str, ref: str) -> bool:
        return ref in self.objects[cls]

    def ref_of_uuid(self, cls: str, uuid: str) -> str:
        try:
            return self.by_uuid[cls][uuid]
        except KeyError:
            raise XapiError("UUID_INVALID", cls, uuid) from None

    def all(self, cls: str) -> dict[str, dict]:
        return self.objects[cls]

    def find(self, cls: str, **match) -> list[str]:
        return [r for r, rec in self.objects[cls].items() if all(rec.get(k) == v for k, v in match.items())]

    # -- writing ---------------------------------------------------------------------
    def _bump(self, cls: str, ref: str) -> None:
        self.generation += 1
        self.modified_at[ref] = self.generation
        if cls not in VOLATILE:  # task progress and sessions need no save
            self.dirty = True
        self.changed.notify_all()

    def add(self, cls: str, record: dict, ref: str | None = None) -> str:
        with self.lock:
            ref = ref or new_ref()
            record.setdefault("uuid", new_uuid())
            self.objects[cls][ref] = record
            self.by_uuid[cls][record["uuid"]] = ref
            self._bump(cls, ref)
            self.created_at[ref] = self.generation
            return ref

    def create(self, cls: str, **fields) -> str:
        return self.add(cls, new_record(cls, **fields))

    def update(self, cls: str, ref: str, **fields) -> None:
        with self.lock:
            rec = self.get(cls, ref)
            rec.update(fields)
            self._bump(cls, ref)

    def touch(self, cls: str, ref: str) -> None:
        """Record an in-place change of a record (list append, map edit)."""
        with self.lock:
            self.get(cls, ref)
            self._bump(cls, ref)

    def add_to(self, cls: str, ref: str, field: str, item) -> None:
        with self.lock:
            rec = self.get(cls, ref)
            if item not in rec[field]:
                rec[field].append(item)
                self._bump(cls, ref)

    def remove_from(self, cls: str, ref: str, field: str, item) -> None:
        with self.lock:
            rec = self.objects[cls].get(ref)
            if rec is not None and item in rec[field]:
                rec[field].remove(item)
                self._bump(cls, ref)

    def delete(self, cls: str, ref: str) -> dict:
        with self.lock:
            rec = self.get(cls, ref)
            del self.objects[cls][ref]
            self.by_uuid[cls].pop(rec["uuid"], None)
            self.generation += 1
            self.created_at.pop(ref, None)
            self.modified_at.pop(ref, None)
            self.deletions.append((self.generation, cls, ref, rec))
            self.dirty = self.dirty or cls not in VOLATILE
            self.changed.notify_all()
            return rec

    # -- events ----------------------------------------------------------------------
    def changes_since(self, classes: set[str] | None, since: int, only_ref: set[str] | None = None) -> list[dict]:
        """Events for objects of ``classes`` (None = all) changed after generation ``since``."""
        events = []
        for cls in CLASSES:
            if classes is not None and cls not in classes:
                continue
            for ref, rec in self.objects[cls].items():
                gen = self.modified_at.get(ref, 0)
                if gen <= since or (only_ref is not None and ref not in only_ref):
                    continue
                op = "add" if self.created_at.get(ref, 0) > since else "mod"
                events.append(event_record(gen, cls, op, ref, rec))
        for gen, cls, ref, rec in self.deletions:
            if gen > since and (classes is None or cls in classes) and (only_ref is None or ref in only_ref):
                events.append(event_record(gen, cls, "del", ref, rec))
        events.sort(key=lambda e: int(e["id"]))
        return events

    # -- persistence -----------------------------------------------------------------
    def save(self, path: str) -> None:
        with self.lock:
            state = {
                cls: {ref: rec for ref, rec in objs.items()}
                for cls, objs in self.objects.items()
                if cls not in VOLATILE
            }
            text = json.dumps({"generation": self.generation, "objects": state})
            self.dirty = False
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def load(self, path: str) -> None:
        with open(path) as f:
            state = json.load(f)
        with self.lock:
            self.generation = state["generation"]
            for cls, objs in state["objects"].items():
                dates = DATETIME_FIELDS[cls]
                for ref, rec in objs.items():
                    for field in dates:
                        if field in rec:
                            rec[field] = Timestamp(rec[field])
                    self.objects[cls][ref] = rec
                    self.by_uuid[cls][rec["uuid"]] = ref
                    self.created_at[ref] = self.modified_at[ref] = self.generation
            self.dirty = False


def event_record(gen: int, cls: str, op: str, ref: str, rec: dict) -> dict:
    return {
        "id": str(gen),
        "timestamp": Timestamp.now(),
        "class": cls.lower(),
        "operation": op,
        "ref": ref,
        "snapshot": dict(copy.copy(rec)),
    }
