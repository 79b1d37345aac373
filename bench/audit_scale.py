"""The audit review at 1,000,000 events on PostgreSQL: filter + page (first, deep, oldest) +
CSV/JSON export, with the number of queries and each query's time, and the export's time and
peak memory, against references measured in the same run on the same rows:

- pages: `SELECT count(*)` of the whole table (what one Paginator page costs at least);
- export: `COPY (SELECT the same columns ...) TO STDOUT` read by this process and dropped.

    .venv/bin/python bench/audit_scale.py [--events 1000000] [--repeat 5]
        [--database-url postgres://postgres@127.0.0.1:5432/audit] [--reuse]

The database is emptied and migrated (unless --reuse finds the events there), then filled
with COPY: rows of a valid keyed chain (sequence, prev_hash, HMAC; sesamweb/audit/models.py),
written in sequence order as record_event would, so verify_audit accepts them. The append-
only triggers (triggers.py) refuse UPDATE / DELETE / TRUNCATE only; COPY appends, so they stay.
Pages are requested through Django's test client as an auditor.
"""
import argparse
import io
import os
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

USERS = [f"user{n:02d}" for n in range(20)] + ["alice"]
ACTIONS = ["update", "update", "update", "create", "login", "logout", "backup", "restore", "job_start", "delete",
           "login_failed", "verify"]
TARGETS = [("xenpools.pool", 3), ("xenpools.vm", 2000), ("backups.datastore", 4), ("backups.backupjob", 200),
           ("backups.restorerun", 5000), ("auth.user", 21)]
COLUMNS = ("sequence", "created", "actor_id", "actor_username", "source", "action", "target_type", "target_id",
           "target_repr", "before", "after", "message", "outcome", "prev_hash", "hash", "chain_version")


def configure(workdir, database_url):
    os.environ["SESAM_DATA_DIR"] = workdir
    os.environ["SESAM_AUDIT_CHECKPOINT_DIR"] = workdir
    os.environ["DJANGO_SETTINGS_MODULE"] = "sesamweb.settings"
    os.environ["DATABASE_URL"] = database_url
    # A fixed chain key: the rows of an earlier run (--reuse) must verify under this run's key
    # (else it is derived from a secret generated into this run's temporary data directory).
    os.environ["SESAM_AUDIT_KEY"] = "bench-audit-scale-not-a-secret"
    os.environ.pop("REDIS_URL", None)
    os.environ.pop("SESAM_SYSLOG_ADDRESS", None)
    import django

    django.setup()
    from django.conf import settings

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]


def fresh_database():
    from django.core.management import call_command
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    call_command("migrate", verbosity=0)


def _copy_text(value):
    if value is None:
        return r"\N"
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def fill(events, start_sequence=1, prev_hash=None):
    """`events` chained rows by COPY, a year of history ending now."""
    import json
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    from sesamweb.audit.models import CHAIN_VERSION, GENESIS_HASH, row_hash

    prev = prev_hash or GENESIS_HASH
    end = timezone.now().replace(microsecond=0)
    step = timedelta(days=365) / max(events, 1)
    begin = end - step * events
    sql = f"COPY audit_auditevent ({', '.join(COLUMNS)}) FROM STDIN"
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        buffer = io.StringIO()
        for i in range(events):
            sequence = start_sequence + i
            target_type, count = TARGETS[i % len(TARGETS)]
            target_id = str(1 + (i * 7919) % count)
            action = ACTIONS[(i * 31) % len(ACTIONS)]
            fields = {
                "sequence": sequence, "created": begin + step * i, "actor_id": None,
                "actor_username": USERS[(i * 13) % len(USERS)], "source": f"10.0.{i % 250}.{i % 200}",
                "action": action, "target_type": target_type, "target_id": target_id,
                "target_repr": f"{target_type.split('.')[1]} {target_id}",
                "before": {"n": i} if action == "update" else None,
                "after": {"n": i + 1} if action in ("update", "create") else None,
                "message": f"bench change {i}" + (" rotated-key" if i % 50_000 == 0 else ""),
                "outcome": "denied" if action == "login_failed" else ("failure" if i % 97 == 0 else "success"),
            }
            digest = row_hash(fields, CHAIN_VERSION, prev)
            values = [fields[c] for c in COLUMNS[:13]]
            values[1] = fields["created"].isoformat(timespec="microseconds")
            values[9] = json.dumps(fields["before"]) if fields["before"] is not None else None
            values[10] = json.dumps(fields["after"]) if fields["after"] is not None else None
            buffer.write("\t".join(_copy_text(v) for v in (*values, prev, digest, CHAIN_VERSION)) + "\n")
            prev = digest
            if i % 20_000 == 19_999:
                copy.write(buffer.getvalue())
                buffer = io.StringIO()
        copy.write(buffer.getvalue())
    with connection.cursor() as cursor:  # what autovacuum does to a table that grew
        cursor.execute("VACUUM ANALYZE audit_auditevent")


class Timings:
    """Every query of a request, with its time (connection.execute_wrapper)."""

    def __init__(self):
        self.queries = []

    def __call__(self, execute, sql, params, many, context):
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.queries.append((sql, (time.perf_counter() - start) * 1000))


def request(client, url):
    from django.db import connection

    timings = Timings()
    start = time.perf_counter()
    with connection.execute_wrapper(timings):
        response = client.get(url)
        body = b"".join(response.streaming_content) if response.streaming else response.content
    wall = (time.perf_counter() - start) * 1000
    if response.status_code != 200:
        raise SystemExit(f"{url}: HTTP {response.status_code}")
    return wall, timings.queries, body


def reference_count(repeat):
    from django.db import connection

    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM audit_auditevent")
            cursor.fetchone()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def reference_copy(where=""):
    """COPY of the exported columns, read by this process and dropped: ms and bytes."""
    from django.db import connection

    columns = ("sequence, created, actor_username, source, action, outcome, target_type, target_id, target_repr, "
               "message, before, after, prev_hash, hash")
    start, size = time.perf_counter(), 0
    with connection.cursor() as cursor, cursor.cursor.copy(
            f"COPY (SELECT {columns} FROM audit_auditevent {where} ORDER BY sequence) TO STDOUT WITH CSV") as copy:
        for block in copy:
            size += len(block)
    return (time.perf_counter() - start) * 1000, size


class RssSampler:
    """Peak resident memory of this process while a block runs (sampled every 20 ms)."""

    def __enter__(self):
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def export(client, url):
    """Wall ms, queries, bytes, peak RSS growth and tracemalloc peak of one streamed export."""
    from django.db import connection

    timings = Timings()
    with connection.execute_wrapper(timings), RssSampler() as rss:
        start = time.perf_counter()
        response = client.get(url)
        size = sum(len(block) for block in response.streaming_content)
        wall = (time.perf_counter() - start) * 1000
    tracemalloc.start()
    response = client.get(url)
    for _block in response.streaming_content:
        pass
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return wall, timings.queries, size, rss.peak - rss.base, traced_peak


def explain(sql_params):
    from django.db import connection

    sql, params = sql_params
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, params)
        return [row[0] for row in cursor.fetchall()]


def measure_verify():
    from sesamweb.audit.chain import verify_chain

    with RssSampler() as rss:
        start, start_cpu = time.perf_counter(), time.process_time()
        report = verify_chain()
        seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    copy_ms, _ = reference_copy("")
    print(f"\nverify_chain: {report.summary.split(',')[0]}: {seconds:.0f} s wall, {cpu:.0f} s CPU "
          f"(x {seconds * 1000 / copy_ms:.0f} the COPY of the rows; peak RSS growth {(rss.peak - rss.base) / 2**20:.1f} MB)")
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} CPUs")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/audit")
    parser.add_argument("--reuse", action="store_true", help="keep the events already there (same --events)")
    parser.add_argument("--verify", action="store_true", help="also time verify_chain over every event")
    parser.add_argument("--verify-only", action="store_true", help="fill if needed, then only time verify_chain")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="audit-scale-") as workdir:
        run(args, workdir)


def run(args, workdir):
    configure(workdir, args.database_url)
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    from sesamweb.audit.filters import AuditEventFilterSet
    from sesamweb.audit.models import AuditEvent
    from tests.fixtures.users import make_user

    if connection.vendor != "postgresql":
        raise SystemExit("this benchmark measures PostgreSQL: give --database-url postgres://...")
    setup_test_environment()
    rebuild = not args.reuse or "audit_auditevent" not in connection.introspection.table_names() or \
        AuditEvent.objects.order_by().count() < args.events
    if rebuild:
        fresh_database()
        start = time.perf_counter()
        fill(args.events)
        print(f"filled {args.events:,} chained events by COPY in {time.perf_counter() - start:.1f} s")
    else:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)  # the indexes of a newer checkout
    if not get_user_model().objects.filter(username="bench-auditor").exists():
        make_user("bench-auditor", "auditor")
    client = Client()
    client.force_login(get_user_model().objects.get(username="bench-auditor"))
    total = AuditEvent.objects.order_by().count()
    top = AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True).first()
    count_ms = reference_count(args.repeat)
    print(f"PostgreSQL: {total:,} audit events; reference SELECT count(*) = {count_ms:.1f} ms (median)\n")
    if args.verify_only:
        return measure_verify()

    from datetime import timedelta

    from django.utils import timezone

    week = timezone.localdate() - timedelta(days=180)
    pages = [
        ("newest page", ""),
        ("deep page (middle)", f"before={top // 2}"),
        ("deep page (near the start)", "before=1000"),
        ("oldest page", "after=0"),
        ("user alice", "actor=alice"),
        ("user alice, deep", f"actor=alice&before={top // 2}"),
        ("action failed sign-in", "action=login_failed"),
        ("outcome failure", "outcome=failure"),
        ("object: one VM", "target_type=xenpools.vm&target_id=42"),
        ("object name 'pool 2'", "target=pool 2"),
        ("one week, 6 months ago", f"since={week.isoformat()}&until={(week + timedelta(days=6)).isoformat()}"),
        ("text, common ('bench change')", "q=bench change"),
        ("text, rare ('rotated-key')", "q=rotated-key"),
    ]
    print(f"{'page (/audit/?...)':<32} queries  median ms  worst ms  slowest query ms  x count(*)")
    for name, query in pages:
        url = "/audit/" + (f"?{query}" if query else "")
        walls, slowest, queries = [], [], None
        for _ in range(args.repeat):
            wall, timings, _ = request(client, url)
            walls.append(wall)
            slowest.append(max(ms for _, ms in timings))
            queries = len(timings)
        median = statistics.median(walls)
        print(f"{name:<32} {queries:>7}  {median:>9.1f}  {max(walls):>8.1f}  {statistics.median(slowest):>16.1f}"
              f"  {median / count_ms:>10.2f}")

    print("\nquery plans (EXPLAIN ANALYZE) of the page query:")
    from django.http import QueryDict

    for name, query in (("user alice, deep", f"actor=alice&before={top // 2}"), ("action failed sign-in", "action=login_failed"),
                        ("one week", f"since={week.isoformat()}&until={(week + timedelta(days=6)).isoformat()}")):
        qs = AuditEventFilterSet(QueryDict(query), queryset=AuditEvent.objects.all()).qs
        if "before=" in query:
            qs = qs.filter(sequence__lt=top // 2)
        plan = explain(qs.order_by("-sequence")[:51].query.sql_with_params())
        print(f"  {name}: " + " | ".join(line.strip() for line in plan if "Scan" in line or "Execution" in line))

    print(f"\n{'export':<36} queries  rows-query  time s  MB out  x COPY  peak RSS growth MB  tracemalloc peak MB")
    for name, query, where in (
            ("CSV, action=update", "action=update", "WHERE action = 'update'"),
            ("JSON, action=update", "action=update", "WHERE action = 'update'"),
            ("CSV, one week (small)", f"since={week.isoformat()}&until={(week + timedelta(days=6)).isoformat()}", None),
            ("CSV, everything", "", "")):
        url = ("/audit/export.json" if name.startswith("JSON") else "/audit/export.csv") + (f"?{query}" if query else "")
        wall, timings, size, rss_growth, traced = export(client, url)
        row_queries = [sql for sql, _ in timings if '"audit_auditevent"."before"' in sql]
        ratio = ""
        if where is not None:
            copy_ms, _ = reference_copy(where)
            ratio = f"{wall / copy_ms:.1f}"
        print(f"{name:<36} {len(timings):>7}  {len(row_queries):>10}  {wall / 1000:>6.1f}  {size / 2**20:>6.0f}  "
              f"{ratio:>6}  {rss_growth / 2**20:>18.1f}  {traced / 2**20:>19.1f}")
    if args.verify:
        measure_verify()
    load = os.getloadavg()
    print(f"\nload average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
