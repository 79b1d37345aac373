"""Restore throughput of sesamweb against `restic dump`, on the same data in the same run.

A simulated VM disk (default 2 GiB: 40 % zeros, 30 % text, 30 % random) is backed up by
sesamweb (`manage.py backup`, normal method, encrypted store) and its XVA export by restic
0.14 (`restic backup --stdin`). Then each restores it to the same simulator:
  sesamweb: `manage.py restore` rebuilds the XVA from the verified chunks and PUTs it to /import;
  restic:   `restic dump latest vm.xva` piped into PUT /import (with its Content-Length),
and, for reference, each tool's stream alone into /dev/null (`restic dump`; sesamweb's XVA
rebuilt from the verified chunks), which shows how much of the time is the simulator's import
(single-threaded Python, on the same 2 cores). Rounds alternate the tools; medians are
reported. Every restored disk is compared with the original. Goal: >= 1.5x.

    .venv/bin/python bench/restore_throughput.py [--size-gib 2] [--repeat 3] [--keep]
"""
import argparse
import http.client
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from urllib.parse import urlencode, urlsplit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.fixtures.sim import SimHandle  # noqa: E402

GiB = 1 << 30
PASSPHRASE = "benchmark passphrase 1234"


class Console:
    """A sesamweb installation of its own (SQLite in a temp dir), driven by its commands."""

    def __init__(self, workdir):
        self.env = dict(os.environ, SESAM_DATA_DIR=os.path.join(workdir, "console"),
                        DJANGO_SETTINGS_MODULE="sesamweb.settings")
        self.env.pop("DATABASE_URL", None)
        self.env.pop("REDIS_URL", None)
        self.db = os.path.join(self.env["SESAM_DATA_DIR"], "sesamweb.sqlite3")

    def manage(self, *args):
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env,
                                capture_output=True, text=True)
        if result.returncode:
            raise SystemExit(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def last(self, table):
        with sqlite3.connect(self.db) as db:
            db.row_factory = sqlite3.Row
            return dict(db.execute(f"SELECT * FROM {table} ORDER BY id DESC LIMIT 1").fetchone())


def seconds(row):
    return (datetime.fromisoformat(row["finished_at"]) - datetime.fromisoformat(row["started_at"])).total_seconds()


def export_into_restic(sim, session, vm_uuid, repo, env):
    x = session.xenapi
    snap = x.VM.snapshot(x.VM.get_by_uuid(vm_uuid), "restic reference")
    try:
        url = f"{sim.url}/export?ref={snap}&session_id={session.handle}&use_compression=false"
        restic = subprocess.Popen(["restic", "-r", repo, "backup", "--stdin", "--stdin-filename", "vm.xva", "-q"],
                                  stdin=subprocess.PIPE, env=env)
        with urllib.request.urlopen(url, timeout=600) as response:
            shutil.copyfileobj(response, restic.stdin, 4 << 20)
        restic.stdin.close()
        if restic.wait():
            raise SystemExit("restic backup failed")
    finally:
        disks = [x.VBD.get_VDI(vbd) for vbd in x.VM.get_VBDs(snap) if x.VBD.get_type(vbd) == "Disk"]
        x.VM.destroy(snap)
        for vdi in disks:
            x.VDI.destroy(vdi)


def restic_xva_size(repo, env):
    listing = subprocess.run(["restic", "-r", repo, "ls", "--json", "latest"], env=env, check=True,
                             capture_output=True, text=True).stdout
    for line in listing.splitlines():
        node = json.loads(line)
        if node.get("name") == "vm.xva":
            return node["size"]
    raise SystemExit("vm.xva not found in the restic snapshot")


def restic_dump_to_null(repo, env):
    start = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        subprocess.run(["restic", "-r", repo, "dump", "latest", "vm.xva"], env=env, stdout=sink, check=True)
    return time.perf_counter() - start


def restic_dump_to_import(sim, session, repo, env, size):
    """`restic dump` piped into PUT /import; returns (seconds, new VM uuid)."""
    x = session.xenapi
    task = x.task.create("restic restore", "bench")
    parts = urlsplit(sim.url)
    start = time.perf_counter()
    dump = subprocess.Popen(["restic", "-r", repo, "dump", "latest", "vm.xva"], env=env, stdout=subprocess.PIPE)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    connection.putrequest("PUT", "/import?" + urlencode({"session_id": session.handle, "task_id": task}))
    connection.putheader("Content-Length", str(size))
    connection.endheaders()
    while block := dump.stdout.read(4 << 20):
        connection.sock.sendall(block)
    if dump.wait():
        raise SystemExit("restic dump failed")
    response = connection.getresponse()
    response.read()
    connection.close()
    while x.task.get_status(task) == "pending":
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    record = x.task.get_record(task)
    if record["status"] != "success":
        raise SystemExit(f"import of restic's dump failed: {record['error_info']}")
    vm_ref = record["result"].split("<value>")[-1].split("</value>")[0] if "<value>" in record["result"] else record["result"]
    x.task.destroy(task)
    return elapsed, x.VM.get_uuid(vm_ref)


def disk_digest(sim, session, vm_uuid):
    """SHA-256 of the VM's first disk read back through /export_raw_vdi."""
    import hashlib

    x = session.xenapi
    vm = x.VM.get_by_uuid(vm_uuid)
    vbd = [v for v in x.VM.get_VBDs(vm) if x.VBD.get_type(v) == "Disk" and x.VBD.get_userdevice(v) == "0"][0]
    vdi_uuid = x.VDI.get_uuid(x.VBD.get_VDI(vbd))
    digest = hashlib.sha256()
    with urllib.request.urlopen(f"{sim.url}/export_raw_vdi?vdi={vdi_uuid}&format=raw&session_id={session.handle}",
                                timeout=600) as response:
        while block := response.read(4 << 20):
            digest.update(block)
    return digest.hexdigest()


XVA_REBUILD = """
import time
from backups.models import RestorePoint
from backups.restore.engine import verified_pieces
from backups.restore.plan import describe_point
from backups.restore.streams import xva_chunks_with_data, xva_upload
from backups.formats.xva import parse_ova_xml
from backups.stores import open_repository

class Quiet:
    def check_cancelled(self): pass
    def advance(self, done): pass

point = RestorePoint.objects.get()
repo = open_repository(point.store)
manifest = repo.load_manifest(point.point_id)
details = describe_point(point, manifest)
refs = {f"vbd{d.userdevice}": d.ref for d in parse_ova_xml(details.ova_xml).disks()}
start = time.perf_counter()
disks = [(refs[d.key], d.virtual_size, xva_chunks_with_data(d, repo.read_chunk),
          verified_pieces(repo, point.point_id, d, Quiet(), 0)) for d in manifest.disks]
upload = xva_upload(details.ova_xml, disks)
sent = sum(len(block) for block in upload.blocks)
assert sent == upload.length
print(time.perf_counter() - start)
"""


def sesamweb_xva_rebuild_to_null(console):
    """The XVA the restore sends, rebuilt from the verified chunks, without any import."""
    result = subprocess.run([sys.executable, "manage.py", "shell", "-c", XVA_REBUILD], cwd=ROOT, env=console.env,
                            capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def destroy_vm(session, vm_uuid):
    x = session.xenapi
    vm = x.VM.get_by_uuid(vm_uuid)
    disks = [x.VBD.get_VDI(vbd) for vbd in x.VM.get_VBDs(vm) if x.VBD.get_type(vbd) == "Disk"]
    x.VM.destroy(vm)
    for vdi in disks:
        x.VDI.destroy(vdi)


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="rounds, alternating the tools; medians are reported")
    parser.add_argument("--sim-data", default=None,
                        help="directory for the simulated pool's disks (e.g. /dev/shm: the pool's own storage "
                             "speed is then out of the measurement, as a real pool's SR is)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if not shutil.which("restic"):
        raise SystemExit("restic is not installed (apt-get install restic)")
    workdir = tempfile.mkdtemp(prefix="sesam-restore-bench-")
    sim_dir = tempfile.mkdtemp(prefix="sesam-restore-sim-", dir=args.sim_data) if args.sim_data else os.path.join(workdir, "sim")
    sim = SimHandle(sim_dir, ["--test-vms", "1"]).start()
    times = {"sesamweb": [], "sesamweb_wall": [], "restic_import": [], "restic_null": [], "sesamweb_null": []}
    identical = True
    try:
        size = int(args.size_gib * GiB) // (1 << 20) * (1 << 20)
        made = sim.control.create_vm("bench-vm", [size], power_state="Halted")
        vm_uuid, vdi = made["uuid"], made["vdis"][0]
        sim.control.call("fill_disk", vdi=vdi, seed=7, zero=0.4, text=0.3, random=0.3)
        session = sim.session()
        original = disk_digest(sim, session, vm_uuid)

        console = Console(workdir)
        console.manage("migrate", "--noinput")
        password_file = os.path.join(workdir, "pool.password")
        with open(password_file, "w") as f:
            f.write(sim.password)
        console.manage("add_pool", "bench", sim.url, "--user", "root", "--password-file", password_file)
        passphrase_file = os.path.join(workdir, "store.passphrase")
        with open(passphrase_file, "w") as f:
            f.write(PASSPHRASE)
        console.manage("add_store", "bench", "--path", os.path.join(workdir, "store"), "--passphrase-file", passphrase_file)
        console.manage("backup", "--vm", vm_uuid, "--store", "bench", "--method", "normal")
        point_id = console.last("backups_restorepoint")["point_id"]

        restic_repo = os.path.join(workdir, "restic")
        restic_env = dict(os.environ, RESTIC_PASSWORD=PASSPHRASE, RESTIC_CACHE_DIR=os.path.join(workdir, "restic-cache"))
        subprocess.run(["restic", "init", "-r", restic_repo, "-q"], env=restic_env, check=True)
        export_into_restic(sim, session, vm_uuid, restic_repo, restic_env)
        xva_size = restic_xva_size(restic_repo, restic_env)

        for round_number in range(args.repeat):
            # sesamweb: manage.py restore (rebuilt XVA -> PUT /import), timed by its RestoreRun
            wall = time.perf_counter()
            console.manage("restore", "--backup", point_id, "--pool", "bench", "--name", f"sesamweb {round_number}")
            times["sesamweb_wall"].append(time.perf_counter() - wall)
            run = console.last("backups_restorerun")
            if run["status"] != "success":
                raise SystemExit(f"sesamweb restore {run['status']}: {run['error']}")
            times["sesamweb"].append(seconds(run))
            identical &= disk_digest(sim, session, run["restored_vm_uuid"]) == original
            destroy_vm(session, run["restored_vm_uuid"])
            # restic: dump -> PUT /import
            elapsed, restic_vm = restic_dump_to_import(sim, session, restic_repo, restic_env, xva_size)
            times["restic_import"].append(elapsed)
            identical &= disk_digest(sim, session, restic_vm) == original
            destroy_vm(session, restic_vm)
            # the stream alone, without an import, for each tool
            times["restic_null"].append(restic_dump_to_null(restic_repo, restic_env))
            times["sesamweb_null"].append(sesamweb_xva_rebuild_to_null(console))
        session.xenapi.session.logout()
    finally:
        sim.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
            if args.sim_data:
                shutil.rmtree(sim_dir, ignore_errors=True)

    m = {name: median(values) for name, values in times.items()}
    results = {
        "disk_gib": round(size / GiB, 2), "xva_MB": round(xva_size / 1e6), "rounds": args.repeat,
        "seconds_each_round": {name: [round(v, 2) for v in values] for name, values in times.items()},
        "sesamweb_restore_MBps": round(size / m["sesamweb"] / 1e6),
        "restic_dump_into_import_MBps": round(size / m["restic_import"] / 1e6),
        "sesamweb_xva_rebuild_alone_MBps": round(size / m["sesamweb_null"] / 1e6),
        "restic_dump_alone_MBps": round(size / m["restic_null"] / 1e6),
        "ratio_restore_into_import": round(m["restic_import"] / m["sesamweb"], 2),
        "ratio_restore_vs_restic_dump_alone": round(m["restic_null"] / m["sesamweb"], 2),
        "ratio_stream_alone": round(m["restic_null"] / m["sesamweb_null"], 2),
        "restored_disks_identical": identical,
    }
    print(json.dumps(results, indent=2))
    print(f"\nrestore into /import, sesamweb / restic dump piped into /import: "
          f"{results['ratio_restore_into_import']:.2f}x  (goal >= 1.5)")
    print(f"sesamweb restore into /import / restic dump alone to /dev/null: {results['ratio_restore_vs_restic_dump_alone']:.2f}x")
    print(f"the restore stream alone (XVA rebuilt / restic dump, both to /dev/null): {results['ratio_stream_alone']:.2f}x")
    if not identical:
        raise SystemExit("a restored disk differs from the original")


if __name__ == "__main__":
    main()
