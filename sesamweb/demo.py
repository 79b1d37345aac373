"""`make demo`: the whole console on one machine, against a simulated pool.

Migrates an SQLite database in SESAM_DATA_DIR (default ./var), creates an administrator
(printing its one-time password on first run), starts the xapisim demo pool, registers it,
then runs daphne, a django-q2 cluster and the inventory event follower until Ctrl-C or SIGTERM,
which stop everything this command started.

Ports: the web console takes SESAM_PORT (default 8000, or a free one when 8000 is taken and
SESAM_PORT is not set). The simulated pool's ports (SESAM_SIM_PORT, SESAM_NBD_PORT) are kept in
the data directory on first start, because the registered pool's address names them. One demo
per data directory: a second one says where the first runs.
"""
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("SESAM_DATA_DIR", ROOT / "var")).resolve()
DEFAULT_PORTS = {"web": 8000, "sim": 8123, "nbd": 10809}
PORT_VARIABLES = {"web": "SESAM_PORT", "sim": "SESAM_SIM_PORT", "nbd": "SESAM_NBD_PORT"}
SIM_HOSTS = 2                 # xapisim's default: host i listens on 127.0.0.(i+1)
SIM_PASSWORD = "demo"
POOL_NAME = "Demo pool"
ADMIN = "admin"


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


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def sim_addresses():
    return [f"127.0.0.{i + 1}" for i in range(SIM_HOSTS)]


def needed(ports):
    """(host, port, what) for every address the demo listens on."""
    yield "127.0.0.1", ports["web"], "the web console", "web"
    for i, host in enumerate(sim_addresses()):
        yield host, ports["sim"], f"the demo pool's host {i + 1} (XenAPI)", "sim"
        yield host, ports["nbd"], f"the demo pool's host {i + 1} (NBD)", "nbd"


def choose_ports():
    """The ports this demo uses, or SystemExit naming the one that is taken and how to choose another."""
    remembered_file = DATA_DIR / "demo-ports.json"
    remembered = json.loads(remembered_file.read_text()) if remembered_file.exists() else {}
    ports = {}
    for kind, default in DEFAULT_PORTS.items():
        variable = PORT_VARIABLES[kind]
        ports[kind] = int(os.environ.get(variable) or remembered.get(kind) or default)
    for host, port, what, kind in needed(ports):
        if port_is_free(host, port):
            continue
        chosen_by_user = bool(os.environ.get(PORT_VARIABLES[kind]))
        if kind == "web" and not chosen_by_user:
            ports["web"] = free_port()
            print(f"sesamweb demo: port {port} is taken; the web console uses {ports['web']} "
                  f"(choose one with {PORT_VARIABLES['web']}=...)", flush=True)
        elif kind in remembered and not chosen_by_user:
            raise SystemExit(
                f"port {port} on {host} for {what} is taken by another program. The demo pool in {DATA_DIR} "
                f"was registered on it: free the port, or start a separate demo with its own data: "
                f"SESAM_DATA_DIR={DATA_DIR}-2 make demo")
        elif not chosen_by_user:
            ports[kind] = free_port()
            print(f"sesamweb demo: port {port} is taken; {what} uses {ports[kind]}", flush=True)
        else:
            raise SystemExit(f"port {port} on {host} for {what} is taken by another program; "
                             f"choose another with {PORT_VARIABLES[kind]}=...")
    # The ports chosen for the pool on first start stay with its data (the pool's address names them).
    remembered_file.write_text(json.dumps({"sim": ports["sim"], "nbd": ports["nbd"]}))
    return ports


def hold_data_dir():
    """One demo per data directory: the lock is held until this process exits, and says where
    the demo runs (say_where) for a second one to tell."""
    lock = open(DATA_DIR / "demo.lock", "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        raise SystemExit(f"a demo already runs with the data in {DATA_DIR} ({holder}). Stop it first "
                         f"(Ctrl-C in its terminal), or start a separate one: SESAM_DATA_DIR={DATA_DIR}-2 make demo")
    return lock


def say_where(lock, web_port):
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()}, http://127.0.0.1:{web_port}/")
    lock.flush()


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sesamweb.settings")
    os.environ["SESAM_DATA_DIR"] = str(DATA_DIR)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    lock = hold_data_dir()   # before choosing ports: a running demo's own ports look taken
    ports = choose_ports()
    say_where(lock, ports["web"])
    web_port, sim_port = ports["web"], ports["sim"]

    print("sesamweb demo: preparing the database ...", flush=True)
    manage("migrate", "--noinput", capture=True)
    admin = manage("create_admin", ADMIN, "--if-missing", capture=True, check=False)
    if admin.returncode != 0:
        raise SystemExit(admin.stderr or admin.stdout)
    if "already exists" in admin.stdout:
        print(f"sesamweb demo: sign in as {ADMIN} with the password you chose at the first sign-in. Lost it? "
              f"{os.path.relpath(sys.executable, ROOT)} manage.py create_admin {ADMIN} --reset-password prints a new "
              f"one-time password.", flush=True)
    else:
        print(admin.stdout.strip(), flush=True)      # the one-time password, on first run only

    children = []

    def start(name, args):
        print(f"sesamweb demo: starting {name}", flush=True)
        proc = subprocess.Popen(args, cwd=ROOT, start_new_session=True)
        children.append((name, proc))
        return proc

    def stop_all(*_):
        # SIGTERM to each leader only: qcluster stops its own workers (a signal to the whole
        # group kills them under it and its stop then hangs); SIGKILL for what is left.
        for name, proc in reversed(children):
            if proc.poll() is None:
                proc.terminate()
        for name, proc in reversed(children):
            try:
                # A worker busy with a backup is killed after this; the job watchdog hands its VM back.
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                print(f"sesamweb demo: {name} did not stop within 10 s; killed", flush=True)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        children.clear()

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        sim = start("the demo pool (xapisim)", [
            sys.executable, "-m", "xapisim", "--listen", f"127.0.0.1:{sim_port}", "--hosts", str(SIM_HOSTS),
            "--nbd-port", str(ports["nbd"]), "--data", str(DATA_DIR / "xapisim"), "--demo", "--password", SIM_PASSWORD,
        ])
        wait_for_port("127.0.0.1", sim_port, "xapisim", sim, timeout=180)
        password_file = DATA_DIR / "demo-pool.password"
        password_file.write_text(SIM_PASSWORD)
        password_file.chmod(0o600)
        existing = manage("shell", "-c", f"from xenpools.models import Pool; print(Pool.objects.filter(name={POOL_NAME!r}).exists())", capture=True)
        # The last line: Django's shell first says how many objects it imported.
        if existing.stdout.strip().splitlines()[-1:] != ["True"]:
            manage("add_pool", POOL_NAME, f"http://127.0.0.1:{sim_port}", "--insecure", "--user", "root",
                   "--password-file", str(password_file))
        start("the task workers (django-q2)", [sys.executable, "manage.py", "qcluster"])
        start("the inventory follower", [sys.executable, "manage.py", "follow_events"])
        web = start("the web console (daphne)", [
            sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(web_port), "sesamweb.asgi:application",
        ])
        wait_for_port("127.0.0.1", web_port, "daphne", web)
        print(f"\nsesamweb is running: http://127.0.0.1:{web_port}/  (Ctrl-C stops everything)\n", flush=True)
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
