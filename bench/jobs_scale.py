"""Server time of the pages that grow with the estate: dashboard, VM list with its protection
columns (plain, filtered by status, filtered by job), run list, and the protection map
behind the job and VM pages, at 2,000 VMs, 200 jobs and 100,000 past runs. Goal: < 200 ms
each on this machine.

    .venv/bin/python bench/jobs_scale.py [--vms 2000] [--jobs 200] [--runs 100000] [--repeat 7]
                                         [--database-url postgres://postgres@127.0.0.1:5432/bench_jobs]

A console of its own (SQLite in a temporary directory, or the given PostgreSQL database, which
is emptied) is migrated and filled with the estate of tests/backups/jobs/scale_data.py; each
page is requested through Django's test client as an administrator (the richest page: bulk
actions included), once to warm up and then --repeat times. Server time is the request's
time in the process (middleware, queries, template): median and worst wall time, median CPU
time of the process, and the number of queries of one request.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
GOAL_MS = 200


def configure(workdir, database_url):
    os.environ["SESAM_DATA_DIR"] = workdir
    os.environ["DJANGO_SETTINGS_MODULE"] = "sesamweb.settings"
    os.environ.pop("REDIS_URL", None)
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    else:
        os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from django.conf import settings

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]


def fresh_database():
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    call_command("migrate", verbosity=0)


class QueryCounter:
    """Counts the queries of a request (CaptureQueriesContext loses them: each request
    starts by resetting connection.queries)."""

    def __init__(self):
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


def counted(function):
    from django.db import connection

    counter = QueryCounter()
    with connection.execute_wrapper(counter):
        result = function()
    return counter.count, result


def measure(client, url, repeat):
    queries, response = counted(lambda: client.get(url))
    if response.status_code != 200:
        raise SystemExit(f"{url}: HTTP {response.status_code}")
    return (queries, *timed(lambda: client.get(url), repeat))


def timed(function, repeat):
    """Median and worst wall time, and median CPU time of this process (the server's own work:
    with SQLite the queries run in-process too), in ms. Other processes on the machine slow
    the wall time; the CPU time shows what the page itself costs."""
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        function()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return statistics.median(wall), max(wall), statistics.median(cpu)


def measure_call(function, repeat):
    queries, _ = counted(function)
    return (queries, *timed(function, repeat))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vms", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--database-url", default="", help="PostgreSQL database to use (emptied first)")
    parser.add_argument("--reuse", metavar="DIR", default="",
                        help="keep the SQLite console in DIR and measure it again on later calls (no rebuild)")
    args = parser.parse_args()

    if args.reuse:
        os.makedirs(args.reuse, exist_ok=True)
        run(args, os.path.abspath(args.reuse), rebuild=not os.path.exists(os.path.join(args.reuse, "sesamweb.sqlite3")))
    else:
        with tempfile.TemporaryDirectory(prefix="jobs-scale-") as workdir:
            run(args, workdir, rebuild=True)


def run(args, workdir, rebuild):
    configure(workdir, "" if args.reuse else args.database_url)
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    from backups.jobs.protection import protection_map
    from backups.models import BackupJob, BackupRun, RestorePoint
    from tests.backups.jobs.scale_data import build_estate
    from tests.fixtures.users import make_user
    from xenpools.models import VM

    setup_test_environment()            # the test client's response.context and no CSRF checks
    if rebuild:
        fresh_database()
        start = time.perf_counter()
        build_estate(workdir, vms=args.vms, jobs=args.jobs, runs=args.runs)
        print(f"built in {time.perf_counter() - start:.0f} s")
        make_user("bench-admin", "administrator")
    print(f"{connection.vendor}: {VM.objects.count()} VMs, {BackupJob.objects.count()} jobs, "
          f"{BackupRun.objects.count()} runs, {RestorePoint.objects.count()} restore points\n")

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench-admin"))

    job = BackupJob.objects.order_by("pk").first()
    pages = [
        ("dashboard", "/"),
        ("VM list", "/pools/vms/"),
        ("VM list, at risk", "/pools/vms/?protection=at_risk"),
        ("VM list, one job", f"/pools/vms/?job={job.pk}"),
        ("VM list, page 30 by host", "/pools/vms/?page=30&ordering=-host"),
        ("job list", "/backups/jobs/"),
        ("run list", "/backups/"),
        ("run list, page 1000", "/backups/?page=1000"),
        ("run list, failed", "/backups/?status=failed"),
    ]
    rows = [(name, *measure(client, url, args.repeat)) for name, url in pages]
    rows.append(("protection map (job list data)", *measure_call(protection_map, args.repeat)))

    width = max(len(row[0]) for row in rows)
    print(f"{'page':<{width}}  queries  median ms  worst ms  cpu ms  goal < {GOAL_MS} ms (median)")
    for name, queries, median, worst, cpu in rows:
        verdict = "ok" if median < GOAL_MS else "OVER"
        print(f"{name:<{width}}  {queries:>7}  {median:>9.0f}  {worst:>8.0f}  {cpu:>6.0f}  {verdict}")
    load = os.getloadavg()
    print(f"\nload average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} CPUs "
          "(wall times above the CPU times are time spent waiting for a CPU)")

if __name__ == "__main__":
    main()
