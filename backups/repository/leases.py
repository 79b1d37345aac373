"""Running-backup leases: locks/<lease-id>.json, written when a backup starts and refreshed
while it runs. gc never sweeps chunks newer than the oldest live lease's start (minus a
grace period), and prune/delete refuse to remove the parent of a running backup. A lease not
refreshed for `stale_after` seconds belongs to a dead writer and is ignored with a warning."""
import json
import logging
import secrets
import time
from dataclasses import dataclass

from .errors import ObjectNotFoundError

log = logging.getLogger(__name__)

LOCKS_PREFIX = "locks/"
DEFAULT_STALE_AFTER = 6 * 3600.0


@dataclass
class Lease:
    lease_id: str
    restore_point_id: str
    parent: str | None
    started: float  # epoch seconds, wall clock of the writer's host
    refreshed: float
    stale: bool = False

    def to_json(self):
        return {"restore_point_id": self.restore_point_id, "parent": self.parent,
                "started": self.started, "refreshed": self.refreshed}


def lease_key(lease_id):
    return f"{LOCKS_PREFIX}{lease_id}.json"


def acquire_lease(backend, restore_point_id, parent) -> Lease:
    now = time.time()
    lease = Lease(secrets.token_hex(8), restore_point_id, parent, now, now)
    backend.put_atomic(lease_key(lease.lease_id), json.dumps(lease.to_json()).encode())
    return lease


def refresh_lease(backend, lease: Lease):
    lease.refreshed = time.time()
    backend.put_atomic(lease_key(lease.lease_id), json.dumps(lease.to_json()).encode())


def release_lease(backend, lease: Lease):
    backend.delete(lease_key(lease.lease_id))


def list_leases(backend, *, stale_after=DEFAULT_STALE_AFTER, now=None, include_stale=False):
    now = time.time() if now is None else now
    leases = []
    for key in backend.list(LOCKS_PREFIX):
        if not key.endswith(".json"):
            continue
        try:
            d = json.loads(backend.get(key))
            lease = Lease(key[len(LOCKS_PREFIX):-5], d["restore_point_id"], d.get("parent"),
                          float(d["started"]), float(d["refreshed"]))
        except ObjectNotFoundError:
            continue  # released meanwhile
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring unreadable lease %s in %s", key, backend.location)
            continue
        if now - lease.refreshed > stale_after:
            lease.stale = True
            log.warning("ignoring stale lease of backup %s (not refreshed since %.0f s) in %s",
                        lease.restore_point_id, now - lease.refreshed, backend.location)
            if not include_stale:
                continue
        leases.append(lease)
    return leases
