"""Backup throughput, day-2 growth, incremental read volume and worker memory, against restic.

In one run, on the same machine and the same simulated disk (default 4 GiB: 40 % zeros, 30 %
text, 30 % random):
  day 1: sesamweb backs the VM up (full; CBT enabled for the next day) with `manage.py backup`
         in its own process; restic 0.14 backs up the same XVA export stream with
         `restic backup --stdin`.
  day 2: 2 % of the disk's 64 KiB blocks are rewritten at random; sesamweb takes an
         incremental backup (CBT + NBD), restic backs up the new export stream again.
Prints the ratios the backup engine issue asks for (goals in brackets):
  throughput sesamweb / restic, day 1          (>= 2.0)
  day-2 store growth sesamweb / restic         (<= 0.75)
  bytes read from the pool / changed bytes     (<= 1.5)
  peak RSS of the backup worker process        (< 150 MiB)
and the CPU time each side used on day 1 (the simulator's share counted apart).

    .venv/bin/python bench/backup_throughput.py [--size-gib 4] [--keep]
"""
import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.fixtures.sim import SimHandle  # noqa: E402

GiB = 1 << 30
BLOCK = 64 * 1024
PASSPHRASE = "benchmark passphrase 1234"


def du(path):
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            total += os.stat(os.path.join(folder, name)).st_blocks * 512
    return total


class Console:
    """A sesamweb installation of its own (SQLite in a temp dir), driven by its commands."""

    def __init__(self, workdir):
        self.env = dict(os.environ, SESAM_DATA_DIR=os.path.join(workdir, "console"), DJANGO_SETTINGS_MODULE="sesamweb.settings")
        self.env.pop("DATABASE_URL", None)
        self.env.pop("REDIS_URL", None)
        self.db = os.path.join(self.env["SESAM_DATA_DIR"], "sesamweb.sqlite3")

    def manage(self, *args):
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env,
                                capture_output=True, text=True)
        if result.returncode:
            raise SystemExit(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def backup(self, vm, store, *extra):
        """Run one backup in a fresh worker process; return (VmBackup row, the worker's peak RSS in MiB)."""
        worker = subprocess.Popen([sys.executable, "manage.py", "backup", "--vm", vm, "--store", store,
                                   "--method", "normal", *extra],
                                  cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = worker.stdout.read().decode()
        _, status, usage = os.wait4(worker.pid, 0)      # the rusage of this very process
        worker.returncode = os.waitstatus_to_exitcode(status)
        if worker.returncode:
            raise SystemExit(f"backup failed:\n{output}")
        with sqlite3.connect(self.db) as db:
            db.row_factory = sqlite3.Row
            row = dict(db.execute("SELECT * FROM backups_vmbackup ORDER BY id DESC LIMIT 1").fetchone())
        self.cpu = (usage.ru_utime, usage.ru_stime)
        return row, usage.ru_maxrss / 1024


def cpu_seconds(pid):
    """User + system CPU time a live process has used so far (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def duration(row):
    from datetime import datetime
    return (datetime.fromisoformat(row["finished_at"]) - datetime.fromisoformat(row["started_at"])).total_seconds()


def restic_backup(sim, session, vm_uuid, repo, env):
    """Stream a fresh snapshot's XVA export into `restic backup --stdin`; return seconds."""
    x = session.xenapi
    vm = x.VM.get_by_uuid(vm_uuid)
    snap = x.VM.snapshot(vm, "restic reference")
    try:
        url = f"{sim.url}/export?ref={snap}&session_id={session.handle}&use_compression=false"
        start = time.perf_counter()
        restic = subprocess.Popen(["restic", "-r", repo, "backup", "--stdin", "--stdin-filename", "vm.xva", "-q"],
                                  stdin=subprocess.PIPE, env=env)
        with urllib.request.urlopen(url, timeout=600) as response:
            shutil.copyfileobj(response, restic.stdin, 4 << 20)
        restic.stdin.close()
        if restic.wait():
            raise SystemExit("restic backup failed")
        return time.perf_counter() - start
    finally:
        disks = [x.VBD.get_VDI(vbd) for vbd in x.VM.get_VBDs(snap) if x.VBD.get_type(vbd) == "Disk"]
        x.VM.destroy(snap)
        for vdi in disks:
            x.VDI.destroy(vdi)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=int, default=4)
    parser.add_argument("--change", type=float, default=0.02, help="fraction of 64 KiB blocks rewritten on day 2")
    parser.add_argument("--compression-level", type=int, default=None, help="zstd level of the store (default: the store's default)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if not shutil.which("restic"):
        raise SystemExit("restic is not installed (apt-get install restic)")
    workdir = tempfile.mkdtemp(prefix="sesam-bench-")
    sim = SimHandle(os.path.join(workdir, "sim"), ["--test-vms", "1"]).start()
    try:
        size = args.size_gib * GiB
        made = sim.control.create_vm("bench-vm", [size], power_state="Running")
        vm_uuid, vdi = made["uuid"], made["vdis"][0]
        sim.control.call("fill_disk", vdi=vdi, seed=7, zero=0.4, text=0.3, random=0.3)
        session = sim.session()

        console = Console(workdir)
        console.manage("migrate", "--noinput")
        password_file = os.path.join(workdir, "pool.password")
        with open(password_file, "w") as f:
            f.write(sim.password)
        console.manage("add_pool", "bench", sim.url, "--user", "root", "--password-file", password_file)
        passphrase_file = os.path.join(workdir, "store.passphrase")
        with open(passphrase_file, "w") as f:
            f.write(PASSPHRASE)
        store_dir = os.path.join(workdir, "store")
        level = ["--compression-level", str(args.compression_level)] if args.compression_level else []
        console.manage("add_store", "bench", "--path", store_dir, "--passphrase-file", passphrase_file, *level)

        restic_repo = os.path.join(workdir, "restic")
        restic_env = dict(os.environ, RESTIC_PASSWORD=PASSPHRASE, RESTIC_CACHE_DIR=os.path.join(workdir, "restic-cache"))
        subprocess.run(["restic", "init", "-r", restic_repo, "-q"], env=restic_env, check=True)

        # -- day 1 ---------------------------------------------------------------------------
        sim_cpu = cpu_seconds(sim.process.pid)
        day1, rss1 = console.backup(vm_uuid, "bench", "--incremental")
        sesam_cpu = console.cpu
        sesam_day1 = duration(day1)
        sim_cpu_sesam, sim_cpu = cpu_seconds(sim.process.pid) - sim_cpu, cpu_seconds(sim.process.pid)
        store_day1 = du(store_dir)
        children = os.times()
        restic_day1 = restic_backup(sim, session, vm_uuid, restic_repo, restic_env)
        restic_cpu = sum(os.times()[2:4]) - sum(children[2:4])   # restic is the only child waited for
        sim_cpu_restic = cpu_seconds(sim.process.pid) - sim_cpu
        restic_size1 = du(restic_repo)

        # -- day 2 ---------------------------------------------------------------------------
        blocks = int(size / BLOCK * args.change)
        written = sim.control.guest_write(blocks, vdi=vdi, seed=11)
        changed_bytes = len(set(written["blocks"])) * BLOCK
        day2, rss2 = console.backup(vm_uuid, "bench", "--incremental")
        store_growth = du(store_dir) - store_day1
        restic_day2 = restic_backup(sim, session, vm_uuid, restic_repo, restic_env)
        restic_growth = du(restic_repo) - restic_size1
        session.xenapi.session.logout()
    finally:
        sim.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    peak = max(rss1, rss2)
    results = {
        "disk_gib": args.size_gib,
        "day1_sesamweb_s": round(sesam_day1, 2), "day1_restic_s": round(restic_day1, 2),
        "day1_throughput_ratio": round(restic_day1 / sesam_day1, 2),
        "day1_sesamweb_MBps": round(size / sesam_day1 / 1e6), "day1_restic_MBps": round(size / restic_day1 / 1e6),
        "day1_cpu_s": {"sesamweb_user": round(sesam_cpu[0], 1), "sesamweb_system": round(sesam_cpu[1], 1),
                       "restic": round(restic_cpu, 1),
                       "simulator_serving_sesamweb": round(sim_cpu_sesam, 1),
                       "simulator_serving_restic": round(sim_cpu_restic, 1)},
        "store_day1_MB": round(store_day1 / 1e6, 1), "restic_day1_MB": round(restic_size1 / 1e6, 1),
        "day2_kind": day2["kind"], "changed_MB": round(changed_bytes / 1e6, 1),
        "day2_growth_sesamweb_MB": round(store_growth / 1e6, 1), "day2_growth_restic_MB": round(restic_growth / 1e6, 1),
        "day2_growth_ratio": round(store_growth / restic_growth, 3) if restic_growth else None,
        "day2_read_from_pool_MB": round(day2["bytes_read"] / 1e6, 1),
        "day2_read_over_changed": round(day2["bytes_read"] / changed_bytes, 3),
        "day2_sesamweb_s": round(duration(day2), 2), "day2_restic_s": round(restic_day2, 2),
        "worker_peak_rss_MiB": round(peak, 1),
    }
    print(json.dumps(results, indent=2))
    print(f"\nthroughput sesamweb / restic, day 1: {results['day1_throughput_ratio']:.2f}x  (goal >= 2.0)")
    print(f"day-2 store growth sesamweb / restic: {results['day2_growth_ratio']}  (goal <= 0.75)")
    print(f"bytes read from the pool / changed bytes (CBT): {results['day2_read_over_changed']}  (goal <= 1.5)")
    print(f"peak RSS of the backup worker: {results['worker_peak_rss_MiB']} MiB  (goal < 150)")


if __name__ == "__main__":
    main()
