"""django-q2 entry points (thin: load the rows, call the service)."""
import threading

from .follower import follow_pools
from .inventory import sync_pool
from .models import Pool


def sync_pool_task(pool_id: int) -> str:
    pool = Pool.objects.get(pk=pool_id)
    result = sync_pool(pool)
    return f"pool {pool.name}: {sum(result.counts.values())} objects changed"


def follow_events_task(pool_names: list | None = None) -> None:
    """Long-running: follow every pool (or the named ones) until the worker stops."""
    pools = Pool.objects.all()
    if pool_names:
        pools = pools.filter(name__in=pool_names)
    follow_pools(list(pools), threading.Event())
