"""Running-backup leases: locks/<lease-id>.json, written when a backup starts and refreshed
while it runs. gc never sweeps chunks newer than the oldest live lease's start (minus a
grace period), and prune/delete refuse to remove the parent of a running backup. A lease not
refreshed for `stale_after` seconds belongs to a dead writer and is ignored with a warning.

Times are the store's clock (the lease object's modification time), the same clock that
stamps chunks, so a worker whose clock is off cannot move gc's cutoff."""
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
    started: float  # epoch seconds, store clock
    refreshed: float  # store clock: the lease object's modification time
    stale: bool = False

    def to_json(self):
        return {"restore_point_id": self.restore_point_id, "parent": self.parent,
                "started": self.started, "refreshed": self.refreshed}


def lease_key(lease_id):
    return f"{LOCKS_PREFIX}{lease_id}.json"


def acquire_lease(backend, restore_point_id, parent) -> Lease:
    lease = Lease(secrets.token_hex(8), restore_point_id, parent, time.time(), time.time())
    key = lease_key(lease.lease_id)
    backend.put_atomic(key, json.dumps(lease.to_json()).encode())
    # Record the start on the store's clock (S3 rounds down to the second: the safe side).
    lease.started = lease.refreshed = backend.stat(key).mtime
    backend.put_atomic(key, json.dumps(lease.to_json()).encode())
    return lease


def refresh_lease(backend, lease: Lease):
    key = lease_key(lease.lease_id)
    backend.put_atomic(key, json.dumps(lease.to_json()).encode())
    lease.refreshed = backend.stat(key).mtime


def release_lease(backend, lease: Lease):
    backend.delete(lease_key(lease.lease_id))


def list_leases(backend, *, stale_after=DEFAULT_STALE_AFTER, now=None, include_stale=False):
    """Leases of running backups; `now` should be store-clock time (default: this host's)."""
    now = time.time() if now is None else now
    leases = []
    for key in backend.list(LOCKS_PREFIX):
        if not key.endswith(".json"):
            continue
        try:
            d = json.loads(backend.get(key))
            lease = Lease(key[len(LOCKS_PREFIX):-5], d["restore_point_id"], d.get("parent"),
                          float(d["started"]), backend.stat(key).mtime)
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
