"""`make demo` (sesamweb/demo.py) on a busy machine: one demo per data directory, a port that is
taken is named with the way to choose another, a second start tells how to sign in, and SIGTERM
stops every process it started."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.services import free_port

pytestmark = [pytest.mark.slow,
              # The demo is the embedded default (SQLite) whatever the tier: run it once, in the first.
              pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="the demo runs on SQLite only")]

REPO = Path(__file__).resolve().parents[2]
STARTUP_DEADLINE = 300


def descendants(pid):
    """Every process below pid (the demo starts its children in sessions of their own)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Demo:
    def __init__(self, data_dir, ports):
        self.env = {**os.environ, "SESAM_DATA_DIR": str(data_dir),
                    **{name: str(port) for name, port in ports.items()}}
        for name in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"):
            self.env.pop(name, None)
        self.log = Path(data_dir).with_suffix(".log")
        self.process = None

    def start(self):
        self.process = subprocess.Popen([sys.executable, "-m", "sesamweb.demo"], cwd=REPO, env=self.env,
                                        stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        return self

    def output(self):
        return self.log.read_text()

    def wait_for(self, text):
        deadline = time.monotonic() + STARTUP_DEADLINE
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        pytest.fail(f"the demo did not print {text!r}:\n{self.output()[-3000:]}")

    def run_to_exit(self):
        """A second demo that must refuse at once: its exit code and output."""
        code = subprocess.run([sys.executable, "-m", "sesamweb.demo"], cwd=REPO, env=self.env,
                              stdout=self.log.open("w"), stderr=subprocess.STDOUT, timeout=120).returncode
        return code, self.output()

    def terminate_and_check_nothing_is_left(self):
        started = descendants(self.process.pid)
        assert started, "the demo started no processes"
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(alive(pid) for pid in started):
            time.sleep(0.2)
        left = [pid for pid in started if alive(pid)]
        assert not left, f"processes left behind: {left}\n{self.output()[-2000:]}"
        return self.process.returncode


@pytest.fixture
def ports():
    return {"SESAM_PORT": free_port(), "SESAM_SIM_PORT": free_port(), "SESAM_NBD_PORT": free_port()}


def test_two_demos_on_one_machine_and_a_clean_stop(tmp_path, ports):
    first = Demo(tmp_path / "var", ports).start()
    try:
        first.wait_for("sesamweb is running")
        assert "One-time password:" in first.output()
        with socket.create_connection(("127.0.0.1", ports["SESAM_PORT"]), timeout=5):
            pass

        # The same data directory: told where the first one runs.
        code, output = Demo(tmp_path / "var", ports).run_to_exit()
        assert code != 0
        assert f"a demo already runs with the data in {tmp_path / 'var'}" in output
        assert f"http://127.0.0.1:{ports['SESAM_PORT']}/" in output

        # Its own data but the same ports: the taken port is named, and how to choose another.
        code, output = Demo(tmp_path / "var2", {**ports, "SESAM_PORT": free_port()}).run_to_exit()
        assert code != 0
        assert f"port {ports['SESAM_SIM_PORT']} on 127.0.0.1 for the demo pool's host 1 (XenAPI) is taken" in output
        assert "SESAM_SIM_PORT=" in output

        assert first.terminate_and_check_nothing_is_left() == 0
    finally:
        if first.process.poll() is None:
            os.killpg(first.process.pid, signal.SIGKILL)

    # Started again on the same data: how to sign in, since the one-time password was shown once.
    again = Demo(tmp_path / "var", ports).start()
    again.wait_for("sesamweb is running")
    assert "sign in as admin with the password you chose" in again.output()
    assert "manage.py create_admin admin --reset-password" in again.output()
    assert again.terminate_and_check_nothing_is_left() == 0
