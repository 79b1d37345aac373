"""Backup and restore throughput against an S3 server, beside restic on the same server.

In one run, on the same machine: a moto S3 server (moto[server], its own process) on a free
loopback port, a generated disk image (default 2 GiB: 40 % zeros, 30 % text, 30 % random,
every block unique; bench/repository_pipeline.py's generator) written to a file, then
  sesamweb backup:  a worker process opens the store (encrypted, the defaults) by key file and
                    backs the image up, read in 4 MiB pieces (as a stream reader hands them on)
  restic backup:    `restic backup --stdin` of the same image into its own bucket
  sesamweb restore: a worker process reads the disk back in order (DiskReader.write_to, zeros
                    included, as a restore's download does) to /dev/null
  restic restore:   `restic dump latest disk.raw` to /dev/null
With --check the sesamweb restore also hashes what it reads and compares with the image
(slower: the hash is work restic's side does not do).
Prints MB/s (of disk size) for each, the ratios sesamweb / restic (goal >= 2 both ways) and
the peak RSS of the sesamweb worker processes (goal < 150 MiB). Both tools talk to the same
server, which also spends CPU on this machine: its CPU seconds are printed per phase.

    .venv/bin/python bench/s3_throughput.py [--size-gib 2] [--rounds 3] [--parallelism N]
                                            [--check] [--keep]
"""
import argparse
import blake3
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

GiB = 1 << 30
MB = 1e6
PIECE = 4 << 20
PASSPHRASE = "benchmark passphrase 1234"
KEY, SECRET = "testing", "testing"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """User + system CPU time a live process has used so far (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_moto(port):
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).close()
            return server
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("moto server did not start (pip install 'moto[server]')")
            time.sleep(0.2)


def s3_backend(endpoint, bucket):
    from backups.repository import S3Backend

    parallelism = int(os.environ.get("BENCH_S3_PARALLELISM", 0)) or None
    return S3Backend(endpoint, bucket, "", access_key=KEY, secret_key=SECRET,
                     parallelism=parallelism)


def write_image(path, size):
    from repository_pipeline import generated_disk

    digest = blake3.blake3()
    with open(path, "wb") as f:
        for _, data in generated_disk(size, PIECE):
            f.write(data)
            digest.update(data)
    return digest.hexdigest()


def run_worker(*args):
    """Run this script as a worker in a fresh process; return (its JSON output, peak RSS MiB)."""
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="sesamweb.settings",
               SESAM_DATA_DIR=os.path.join(os.path.dirname(args[3]), "console"))
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    worker = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", *args],
                              cwd=ROOT, stdout=subprocess.PIPE, env=env)
    output = worker.stdout.read().decode()
    _, status, usage = os.wait4(worker.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"worker {args[0]} failed:\n{output}")
    return json.loads(output), usage.ru_maxrss / 1024


def worker(argv):
    """--worker backup|restore ENDPOINT BUCKET KEYFILE IMAGE SIZE"""
    from datetime import datetime, timezone

    # What a backup or restore worker has loaded (Django, the engines) and how it sets up
    # its allocator, so its peak RSS is the worker's.
    import django

    django.setup()
    import backups.engine.backup  # noqa: F401
    import backups.restore.engine  # noqa: F401
    from backups.engine.allocator import keep_buffers_resident
    from backups.repository import Repository

    keep_buffers_resident()
    action, endpoint, bucket, key_file, image, size = argv
    size = int(size)
    with open(key_file, "rb") as f:
        repo = Repository.open(s3_backend(endpoint, bucket), key_file=f.read())
    start = time.perf_counter()
    if action == "backup":
        with repo.start_backup("vm-bench", datetime.now(timezone.utc)) as writer:
            disk = writer.add_disk("xvda", size)
            with open(image, "rb", buffering=0) as f:
                offset = 0
                while data := f.read(PIECE):
                    disk.write(offset, data)
                    offset += len(data)
            disk.finish()
            manifest = writer.commit()
        result = {"id": manifest.id, "totals": manifest.totals}
    else:
        point = repo.list_backups("vm-bench")[-1].id
        reader = repo.open_disk(point, "xvda")
        if os.environ.get("BENCH_CHECK"):
            digest = blake3.blake3()
            for _, data in reader.stream():
                digest.update(data)
            result = {"digest": digest.hexdigest()}
        else:
            with open(os.devnull, "wb") as null:
                reader.write_to(null)
            result = {}
    result["seconds"] = time.perf_counter() - start
    print(json.dumps(result))


CREATE = ("import sys; sys.path.insert(0, %r)\n"
          "from bench.s3_throughput import s3_backend\n"
          "from backups.repository import Repository\n"
          "repo = Repository.create(s3_backend(sys.argv[1], sys.argv[2]), passphrase=%r)\n"
          "sys.stdout.buffer.write(repo.export_key_file())\n") % (ROOT, PASSPHRASE)


def timed(cmd, env, stdin=None, stdout=None):
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdin=stdin, stdout=stdout)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--parallelism", type=int, default=None,
                        help="requests in flight (default: S3Backend.parallelism)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (medians are printed)")
    parser.add_argument("--check", action="store_true",
                        help="hash the restored disk and compare it with the image")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if args.check:
        os.environ["BENCH_CHECK"] = "1"
    if args.parallelism:
        os.environ["BENCH_S3_PARALLELISM"] = str(args.parallelism)
    if not shutil.which("restic"):
        raise SystemExit("restic is not installed (apt-get install restic)")
    size = int(args.size_gib * GiB)
    workdir = tempfile.mkdtemp(prefix="sesam-s3-bench-")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = start_moto(port)
    rounds = []
    try:
        image = os.path.join(workdir, "disk.raw")
        image_digest = write_image(image, size)
        restic_env = dict(os.environ, RESTIC_PASSWORD=PASSPHRASE, AWS_ACCESS_KEY_ID=KEY,
                          AWS_SECRET_ACCESS_KEY=SECRET,
                          RESTIC_CACHE_DIR=os.path.join(workdir, "restic-cache"))
        for number in range(args.rounds):
            rounds.append(one_round(number, server, endpoint, workdir, image, size, restic_env))
            if args.check and rounds[-1].pop("digest") != image_digest:
                raise SystemExit("sesamweb restored different bytes")
            print(json.dumps(rounds[-1]), file=sys.stderr)
    finally:
        server.terminate()
        server.wait()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    def rate(key):
        return round(size / MB / median([r[key] for r in rounds]))

    def ratio(what):
        return round(median([r[f"restic_{what}_s"] / r[f"sesamweb_{what}_s"] for r in rounds]), 2)

    results = {
        "disk_MB": round(size / MB), "rounds": args.rounds,
        "backup_MBps": {"sesamweb": rate("sesamweb_backup_s"), "restic": rate("restic_backup_s")},
        "restore_MBps": {"sesamweb": rate("sesamweb_restore_s"),
                         "restic": rate("restic_restore_s")},
        "backup_ratio": ratio("backup"), "restore_ratio": ratio("restore"),
        "sesamweb_stored_MB": rounds[0]["sesamweb_stored_MB"],
        "worker_peak_rss_MiB": {"backup": max(r["backup_rss_MiB"] for r in rounds),
                                "restore": max(r["restore_rss_MiB"] for r in rounds)},
        "s3_server_cpu_s": rounds[-1]["s3_server_cpu_s"],
    }
    print(json.dumps(results, indent=2))
    print(f"\nbackup  sesamweb / restic: {results['backup_ratio']:.2f}x  (goal >= 2.0), "
          f"median of {args.rounds}")
    print(f"restore sesamweb / restic: {results['restore_ratio']:.2f}x  (goal >= 2.0)")
    print(f"worker peak RSS: {max(results['worker_peak_rss_MiB'].values())} MiB  (goal < 150)")


def median(values):
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def one_round(number, server, endpoint, workdir, image, size, restic_env):
    """Each tool backs up into a new bucket of its own, then restores from it."""
    sesam_bucket, restic_bucket = f"sesam-{number}", f"restic-{number}"
    client = s3_backend(endpoint, sesam_bucket).client
    for bucket in (sesam_bucket, restic_bucket):
        client.create_bucket(Bucket=bucket)
    key_file = os.path.join(workdir, f"store-{number}.key")
    with open(key_file, "wb") as f:
        f.write(subprocess.run([sys.executable, "-c", CREATE, endpoint, sesam_bucket],
                               check=True, capture_output=True).stdout)
    restic_repo = f"s3:{endpoint}/{restic_bucket}"
    subprocess.run(["restic", "-r", restic_repo, "init", "-q"], env=restic_env, check=True)
    server_cpu = {}

    def phase(name, fn):
        before = cpu_seconds(server.pid)
        result = fn()
        server_cpu[name] = round(cpu_seconds(server.pid) - before, 1)
        return result

    common = (endpoint, sesam_bucket, key_file, image, str(size))
    backup, backup_rss = phase("sesamweb_backup", lambda: run_worker("backup", *common))
    with open(image, "rb") as f:
        restic_backup_s = phase("restic_backup", lambda: timed(
            ["restic", "-r", restic_repo, "backup", "-q", "--stdin", "--stdin-filename", "disk.raw"],
            restic_env, stdin=f))
    restore, restore_rss = phase("sesamweb_restore", lambda: run_worker("restore", *common))
    with open(os.devnull, "wb") as null:
        restic_restore_s = phase("restic_restore", lambda: timed(
            ["restic", "-r", restic_repo, "dump", "-q", "latest", "disk.raw"], restic_env, stdout=null))
    result = {"sesamweb_backup_s": backup["seconds"], "restic_backup_s": restic_backup_s,
              "sesamweb_restore_s": restore["seconds"], "restic_restore_s": restic_restore_s,
              "sesamweb_stored_MB": round(backup["totals"]["bytes_stored"] / MB),
              "backup_rss_MiB": round(backup_rss), "restore_rss_MiB": round(restore_rss),
              "s3_server_cpu_s": server_cpu}
    if "digest" in restore:
        result["digest"] = restore["digest"]
    for bucket in (sesam_bucket, restic_bucket):  # moto keeps objects in memory
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=item["Key"])
    return result


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2:])
    else:
        main()
