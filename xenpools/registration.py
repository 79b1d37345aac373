"""Adding, changing and removing pools: the steps behind the wizard, the API and add_pool.

A pool is saved only after a successful connection test (PoolConnection.probe), with the
master it found (a member's address is replaced by its master) and, for https, the master's
certificate fingerprint the administrator confirmed. Every change is audited; the password
never appears in the audit log (model_snapshot hides it).
"""
from django.db import transaction

from sesamweb.audit.choices import AuditAction
from sesamweb.audit.log import model_snapshot, record_event

from .connection import PoolError, ProbeResult, parse_address
from .inventory import sync_pool
from .models import Pool


def _audit(action, pool, **kwargs):
    return record_event(action, target=pool, **kwargs)


def _snapshot(pool):
    return model_snapshot(pool, exclude=("password", "password_encrypted"))


def register_pool(name: str, address: str, username: str, password: str, probe: ProbeResult, *, sync: bool = True) -> Pool:
    """Create the pool from a successful probe, audit it, and run the first inventory sync here
    (sync=True: the command line, tests). The wizard and the API pass sync=False and queue the
    first sync on a worker (xenpools.sync.request_sync)."""
    parsed = parse_address(address)
    with transaction.atomic():
        pool = Pool(
            name=name, scheme=parsed.scheme, address=probe.master_address, port=parsed.port,
            username=username, uuid=probe.pool_uuid, pool_label=probe.pool_name,
            master_address=probe.master_address, member_addresses=probe.member_addresses,
            ha_enabled=probe.ha_enabled, product_brand=probe.product_brand,
            product_version=probe.product_version,
            fingerprints={probe.master_address: probe.fingerprint} if probe.fingerprint else {},
        )
        pool.save()
        pool.set_password(password)
        pool.save(update_fields=["password_encrypted"])
        message = f"added pool {name} at {probe.master_address}"
        if probe.redirected_from:
            message += f" (entered {probe.redirected_from}, a member of the pool)"
        _audit(AuditAction.CREATE, pool, after=_snapshot(pool), message=message)
        if probe.fingerprint:
            _audit(AuditAction.TRUST_CERTIFICATE, pool,
                   message=f"trusted the certificate of {probe.master_address}: {probe.fingerprint}")
    if sync:
        try:
            sync_pool(pool)
        except PoolError:
            pass          # the pool is saved; its health shows the error
    return pool


LIMIT_FIELDS = ("streams_per_host", "snapshots_at_once")


def update_pool(pool: Pool, *, name: str, username: str, password: str | None, probe: ProbeResult | None,
                limits: dict | None = None) -> Pool:
    """Change a pool's name and credentials (re-tested: `probe` is the fresh test result), and
    its stream limits (`limits`: streams_per_host, snapshots_at_once)."""
    before = _snapshot(pool)
    with transaction.atomic():
        pool.name, pool.username = name, username
        for field in LIMIT_FIELDS:
            if limits and field in limits:
                setattr(pool, field, limits[field])
        if probe is not None:
            pool.address = pool.master_address = probe.master_address
            if probe.fingerprint and pool.fingerprints.get(probe.master_address) != probe.fingerprint:
                pool.fingerprints = {**pool.fingerprints, probe.master_address: probe.fingerprint}
                _audit(AuditAction.TRUST_CERTIFICATE, pool,
                       message=f"trusted the certificate of {probe.master_address}: {probe.fingerprint}")
        if password:
            pool.set_password(password)
        pool.save()
        _audit(AuditAction.UPDATE, pool, before=before, after=_snapshot(pool),
               message=f"changed pool {pool.name}" + (" credentials" if password else ""))
    return pool


def delete_pool(pool: Pool) -> None:
    before = _snapshot(pool)
    with transaction.atomic():
        _audit(AuditAction.DELETE, pool, before=before, message=f"removed pool {pool.name} and its inventory mirror")
        pool.delete()
