"""django-q2 entry points (thin: load the rows, call the service)."""
import threading

from django.contrib.auth import get_user_model

from .follower import follow_pools
from .models import Pool
from .sync import run_requested_sync


def sync_pool_task(pool_id: int, user_id: int | None = None) -> str:
    """A sync asked for by a person (Sync now, the API, a new pool); see xenpools/sync.py."""
    pool = Pool.objects.filter(pk=pool_id).first()
    if pool is None:
        return f"pool #{pool_id} no longer exists"
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    run_requested_sync(pool, user)
    pool.refresh_from_db(fields=["sync_outcome"])
    return f"pool {pool.name}: {pool.sync_outcome}"


def follow_events_task(pool_names: list | None = None) -> None:
    """Long-running: follow every pool (or the named ones) until the worker stops."""
    pools = Pool.objects.all()
    if pool_names:
        pools = pools.filter(name__in=pool_names)
    follow_pools(list(pools), threading.Event())
