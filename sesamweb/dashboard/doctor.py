"""`manage.py doctor`: is this installation able to back up? Each check says what it found and,
when something is wrong, what to do about it.

The checks reach every part the console depends on the way the console itself does: the
database and its migrations, the task broker and the channel layer (Redis at scale), a worker
that really takes a task, each pool (login through the pinned certificate, clock), each data
store (a probe object written and removed through its own backend).
"""
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

CLOCK_SKEW_LIMIT = 60            # seconds; snapshots, schedules and TLS all go wrong beyond this
WORKER_WAIT = 20                 # seconds a worker gets to take the test task


@dataclass
class Finding:
    check: str
    ok: bool
    detail: str
    advice: str = ""


def pong():
    """The test task a worker runs for check_workers."""
    return "pong"


def check_database():
    from django.db.migrations.executor import MigrationExecutor

    connection = connections[DEFAULT_DB_ALIAS]
    try:
        connection.ensure_connection()
        pending = MigrationExecutor(connection).migration_plan(MigrationExecutor(connection).loader.graph.leaf_nodes())
    except Exception as exc:  # noqa: BLE001 - any driver error is the finding
        return [Finding("database", False, f"{connection.vendor} database not reachable: {exc}",
                        "check DATABASE_URL and that the database server runs")]
    if pending:
        return [Finding("database", False, f"{len(pending)} migrations not applied",
                        "run: manage.py migrate")]
    return [Finding("database", True, f"{connection.vendor}, migrations applied")]


def check_broker():
    if not settings.REDIS_URL:
        return [Finding("task broker", True, "django-q2 ORM broker in the database (embedded default)")]
    from django_q.brokers import get_broker

    try:
        get_broker().ping()
    except Exception as exc:  # noqa: BLE001
        return [Finding("task broker", False, f"Redis at {_redacted(settings.REDIS_URL)} not reachable: {exc}",
                        "start Redis or correct REDIS_URL; no backup can be queued until then")]
    return [Finding("task broker", True, f"Redis at {_redacted(settings.REDIS_URL)}")]


def check_channel_layer():
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if not settings.REDIS_URL:
        return [Finding("channel layer", True, "in-process; workers' live updates go through the database relay")]
    try:
        channel = async_to_sync(layer.new_channel)()
        async_to_sync(layer.send)(channel, {"type": "doctor.ping"})
        message = async_to_sync(layer.receive)(channel)
    except Exception as exc:  # noqa: BLE001
        return [Finding("channel layer", False, f"Redis channel layer not reachable: {exc}",
                        "start Redis or correct REDIS_URL; pages stop updating live until then")]
    if message.get("type") != "doctor.ping":
        return [Finding("channel layer", False, "a message sent came back changed", "check the Redis server")]
    return [Finding("channel layer", True, "Redis: a message went round")]


def check_workers(wait=WORKER_WAIT):
    from django_q.tasks import async_task, fetch

    try:
        task_id = async_task("sesamweb.dashboard.doctor.pong", task_name=f"doctor-{uuid.uuid4().hex[:8]}")
    except Exception as exc:  # noqa: BLE001
        return [Finding("workers", False, f"could not queue a test task: {exc}", "fix the task broker first")]
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        task = fetch(task_id)
        if task is not None:
            return [Finding("workers", task.success, f"a worker ran the test task in {task.time_taken():.1f} s"
                            if task.success else f"the test task failed on the worker: {task.result}")]
        time.sleep(0.5)
    return [Finding("workers", False, f"no worker took a test task within {wait} s",
                    f"start the workers: manage.py qcluster (cluster {settings.Q_CLUSTER['name']})")]


def check_pools():
    from xenpools.connection import PoolConnection
    from xenpools.models import Pool

    findings = []
    for pool in Pool.objects.order_by("name"):
        name = f"pool {pool.name}"
        try:
            with PoolConnection.open(pool) as conn:
                pool_ref = conn.xenapi.pool.get_all()[0]
                server_time = conn.xenapi.host.get_servertime(conn.xenapi.pool.get_master(pool_ref))
                master = conn.master_address
        except Exception as exc:  # noqa: BLE001 - the connection's own messages say what failed
            findings.append(Finding(name, False, f"{pool.address}: {exc}",
                                    "check the address, the credentials (Pools -> Edit) and the certificate"))
            continue
        skew = _seconds_between(server_time, timezone.now())
        if abs(skew) > CLOCK_SKEW_LIMIT:
            findings.append(Finding(name, False, f"reachable, but its clock is {skew:+.0f} s from this machine's",
                                    "synchronise both clocks (chrony/NTP); schedules and retention read them"))
        else:
            findings.append(Finding(name, True, f"master {master}: signed in, certificate as pinned, "
                                                f"clock {skew:+.0f} s"))
    return findings or [Finding("pools", True, "none registered yet")]


def check_stores():
    from backups.models import DataStore
    from backups.stores import backend_for

    findings = []
    for store in DataStore.objects.order_by("name"):
        name = f"data store {store.name}"
        key = f"doctor-probe-{uuid.uuid4().hex}"
        try:
            backend = backend_for(store)
            backend.put_atomic(key, b"sesamweb doctor probe\n")
            backend.delete(key)
        except Exception as exc:  # noqa: BLE001
            findings.append(Finding(name, False, f"cannot write to {store.location}: {exc}",
                                    "make it writable for the user the workers run as (and mounted), "
                                    "or take the store offline"))
            continue
        findings.append(Finding(name, True, f"{store.location} writable"))
    return findings or [Finding("data stores", True, "none yet")]


def check_database_clock():
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        skew = _seconds_between(cursor.fetchone()[0], timezone.now())
    if abs(skew) > CLOCK_SKEW_LIMIT:
        return [Finding("database clock", False, f"{skew:+.0f} s from this machine's", "synchronise the clocks")]
    return [Finding("database clock", True, f"{skew:+.0f} s")]


CHECKS = [check_database, check_broker, check_channel_layer, check_workers, check_pools, check_stores,
          check_database_clock]


def run_checks(checks=CHECKS):
    findings = []
    for check in checks:
        findings.extend(check())
    return findings


def _seconds_between(remote, local):
    if not hasattr(remote, "tzinfo"):            # xapi's time: an XML-RPC DateTime
        from xenpools.inventory import _datetime

        remote = _datetime(remote)
    return (remote - local).total_seconds()


def _redacted(url):
    """The URL without a password."""
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
