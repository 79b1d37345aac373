"""`make demo`: the whole console on one machine, against a simulated pool.

Migrates an SQLite database in SESAM_DATA_DIR (default ./var), creates an administrator
(printing its one-time password on first run), starts the xapisim demo pool, registers it,
then runs daphne, a django-q2 cluster and the inventory event follower until Ctrl-C, which
stops everything this command started.
"""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("SESAM_DATA_DIR", ROOT / "var")).resolve()
WEB_PORT = int(os.environ.get("SESAM_PORT", 8000))
SIM_PORT = int(os.environ.get("SESAM_SIM_PORT", 8123))
SIM_PASSWORD = "demo"
POOL_NAME = "Demo pool"


def manage(*args, check=True, capture=False):
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT, check=check, text=True, capture_output=capture,
    )


def wait_for_port(host, port, what, process, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with code {process.returncode}; see the output above")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{what} did not start listening on {host}:{port} within {timeout} s")


def port_is_free(host, port):
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sesamweb.settings")
    os.environ["SESAM_DATA_DIR"] = str(DATA_DIR)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    for host, port, what in (("127.0.0.1", WEB_PORT, "the web console"), ("127.0.0.1", SIM_PORT, "the simulator")):
        if not port_is_free(host, port):
            raise SystemExit(f"port {port} for {what} is in use; set SESAM_PORT / SESAM_SIM_PORT to free ports")

    print("sesamweb demo: preparing the database ...", flush=True)
    manage("migrate", "--noinput", capture=True)
    admin = manage("create_admin", "admin", "--if-missing", capture=True, check=False)
    if admin.returncode != 0:
        raise SystemExit(admin.stderr or admin.stdout)
    print(admin.stdout.strip(), flush=True)      # the one-time password, on first run only

    children = []

    def start(name, args):
        print(f"sesamweb demo: starting {name}", flush=True)
        proc = subprocess.Popen(args, cwd=ROOT, start_new_session=True)
        children.append((name, proc))
        return proc

    def stop_all(*_):
        for name, proc in reversed(children):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for name, proc in reversed(children):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        children.clear()

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        sim = start("the demo pool (xapisim)", [
            sys.executable, "-m", "xapisim", "--listen", f"127.0.0.1:{SIM_PORT}",
            "--data", str(DATA_DIR / "xapisim"), "--demo", "--password", SIM_PASSWORD,
        ])
        wait_for_port("127.0.0.1", SIM_PORT, "xapisim", sim, timeout=180)
        password_file = DATA_DIR / "demo-pool.password"
        password_file.write_text(SIM_PASSWORD)
        password_file.chmod(0o600)
        existing = manage("shell", "-c", f"from xenpools.models import Pool; print(Pool.objects.filter(name={POOL_NAME!r}).exists())", capture=True)
        if existing.stdout.strip() != "True":
            manage("add_pool", POOL_NAME, f"http://127.0.0.1:{SIM_PORT}", "--insecure", "--user", "root",
                   "--password-file", str(password_file))
        start("the task workers (django-q2)", [sys.executable, "manage.py", "qcluster"])
        start("the inventory follower", [sys.executable, "manage.py", "follow_events"])
        web = start("the web console (daphne)", [
            sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(WEB_PORT), "sesamweb.asgi:application",
        ])
        wait_for_port("127.0.0.1", WEB_PORT, "daphne", web)
        print(f"\nsesamweb is running: http://127.0.0.1:{WEB_PORT}/  (Ctrl-C stops everything)\n", flush=True)
        while all(proc.poll() is None for _, proc in children):
            time.sleep(0.5)
        dead = [name for name, proc in children if proc.poll() is not None]
        print(f"sesamweb demo: {', '.join(dead)} stopped unexpectedly; shutting down", flush=True)
        return 1
    except KeyboardInterrupt:
        print("\nsesamweb demo: stopping ...", flush=True)
        return 0
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
