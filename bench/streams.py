"""Multiple streams: aggregate backup throughput of 8 VMs with 1, 2 and 4 streams.

The simulator is limited to a per-stream rate like a real xapi export (`--rate-mbps`, default
100 MB/s per transfer: one export is bound by its host's disk and dom0, not by the backup
server), so one stream at a time leaves the backup server mostly idle. A real django-q2
cluster (`manage.py qcluster`, 4 workers, SQLite + ORM broker as the embedded default) runs
one job of 8 VMs per round; the round's data store allows N streams (`max_parallel_streams`,
the limit under test; the pool's hosts allow 8). Each round writes to a store of its own, so
no round deduplicates against another. Rounds: 1, 2, 4 streams, then 1 again, so that the
4-stream run sits beside 1-stream runs measured in the same benchmark run.

Prints per round: wall time of the run, aggregate MB/s of disk backed up, how many exports
the simulator served at once (from its own transfer log), and the cluster's CPU seconds per
GB (every process of the cluster: the workers and their sentinel, user + system), then the
ratios against the first 1-stream round (goal: 4 streams >= 3.5x one stream).

    .venv/bin/python bench/streams.py [--vms 8] [--disk-mib 256] [--rate-mbps 100] [--keep]
"""
import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.backup_throughput import PASSPHRASE, Console  # noqa: E402
from tests.fixtures.sim import SimHandle  # noqa: E402

MiB = 1 << 20


def session_cpu_seconds(sid):
    """User + system CPU time of every live process in session `sid` (the cluster's)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def max_overlap(intervals):
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def shell(console, code):
    return console.manage("shell", "--no-imports", "-c", code).strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=8)
    parser.add_argument("--disk-mib", type=int, default=256, help="disk size per VM (40 %% zeros, 30 %% text, 30 %% random)")
    parser.add_argument("--rate-mbps", type=float, default=100.0, help="per-stream export rate of the simulated pool")
    parser.add_argument("--rounds", default="1,2,4,1", help="streams per round")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    rounds = [int(n) for n in args.rounds.split(",")]
    workdir = tempfile.mkdtemp(prefix="sesam-bench-streams-")
    sim = SimHandle(os.path.join(workdir, "sim"), []).start()
    cluster = None
    results = []
    try:
        for i in range(args.vms):
            made = sim.control.create_vm(f"bench-vm-{i}", [args.disk_mib * MiB])
            sim.control.call("fill_disk", vdi=made["vdis"][0], seed=100 + i, zero=0.4, text=0.3, random=0.3)
        console = Console(workdir)
        console.manage("migrate", "--noinput")
        password_file = os.path.join(workdir, "pool.password")
        with open(password_file, "w") as f:
            f.write(sim.password)
        console.manage("add_pool", "bench", sim.url, "--user", "root", "--password-file", password_file, "--insecure")
        passphrase_file = os.path.join(workdir, "store.passphrase")
        with open(passphrase_file, "w") as f:
            f.write(PASSPHRASE)
        shell(console, "from xenpools.models import Pool; Pool.objects.update(streams_per_host=8)")
        for index, streams in enumerate(rounds):
            name = f"round{index}-{streams}"
            console.manage("add_store", name, "--path", os.path.join(workdir, name), "--passphrase-file", passphrase_file)
            shell(console, f"""
from backups.models import BackupJob, DataStore
store = DataStore.objects.get(name={name!r}); store.max_parallel_streams = {streams}; store.save()
BackupJob.objects.create(name={name!r}, store=store, rule_name_pattern='bench-vm-*', max_parallel_vms=8,
                         incremental=False)""")
        sim.control.rate_limit(int(args.rate_mbps * 1e6))
        env = dict(console.env, SESAM_WORKERS="4")
        log = open(os.path.join(workdir, "qcluster.log"), "ab")
        cluster = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        time.sleep(3)
        for index, streams in enumerate(rounds):
            name = f"round{index}-{streams}"
            sim.control.clear_transfer_log()
            cpu_before = session_cpu_seconds(cluster.pid)
            run_id = int(shell(console, f"""
from backups.jobs.runs import start_job_run
from backups.models import BackupJob
print(start_job_run(BackupJob.objects.get(name={name!r})).pk)"""))
            while True:
                with sqlite3.connect(console.db) as db:
                    status, = db.execute("SELECT status FROM backups_backuprun WHERE id = ?", (run_id,)).fetchone()
                if status in ("success", "warning", "failed", "cancelled"):
                    break
                if cluster.poll() is not None:
                    raise SystemExit("the cluster exited; see " + os.path.join(workdir, "qcluster.log"))
                time.sleep(0.2)
            cpu = session_cpu_seconds(cluster.pid) - cpu_before
            with sqlite3.connect(console.db) as db:
                rows = db.execute("SELECT status, started_at, finished_at, bytes_processed, bytes_read, error "
                                  "FROM backups_vmbackup WHERE run_id = ?", (run_id,)).fetchall()
            failed = [r for r in rows if r[0] != "success"]
            if failed:
                raise SystemExit(f"round {name}: {len(failed)} VM(s) not backed up: {failed[0]}")
            from datetime import datetime
            start = min(datetime.fromisoformat(r[1]) for r in rows)
            end = max(datetime.fromisoformat(r[2]) for r in rows)
            seconds = (end - start).total_seconds()
            disk = sum(r[3] for r in rows)
            exports = [(e["start"], e["end"]) for e in sim.control.transfer_log() if e["kind"] == "/export"]
            results.append({
                "streams": streams, "seconds": round(seconds, 2), "disk_MB": round(disk / 1e6),
                "wire_MB": round(sum(r[4] for r in rows) / 1e6), "MBps": round(disk / seconds / 1e6, 1),
                "exports_at_once": max_overlap(exports), "cluster_cpu_s": round(cpu, 1),
                "cpu_s_per_GB": round(cpu / (disk / 1e9), 2),
            })
            print(json.dumps(results[-1]), flush=True)
    finally:
        if cluster is not None and cluster.poll() is None:
            os.killpg(cluster.pid, signal.SIGTERM)
            try:
                cluster.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(cluster.pid, signal.SIGKILL)
        sim.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    reference = results[0]["MBps"]
    print(f"\n{args.vms} VMs x {args.disk_mib} MiB, exports limited to {args.rate_mbps:.0f} MB/s per stream, "
          f"4 workers, {os.cpu_count()} CPUs")
    for row in results:
        print(f"{row['streams']} stream(s): {row['MBps']:7.1f} MB/s  {row['MBps'] / reference:4.2f}x one stream  "
              f"(exports at once {row['exports_at_once']}, cluster CPU {row['cpu_s_per_GB']:.2f} s/GB)")
    four = [r["MBps"] for r in results if r["streams"] == 4]
    if four:
        print(f"4 streams / 1 stream: {max(four) / reference:.2f}x  (goal >= 3.5)")


if __name__ == "__main__":
    main()
