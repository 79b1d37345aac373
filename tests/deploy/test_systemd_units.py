"""The systemd units shipped in deploy/systemd/ parse, and every command they start exists here:
the manage.py commands with the arguments the unit gives them, daphne and the ASGI application.
With systemd-analyze installed the units are verified by systemd itself (paths mapped from
/opt/sesamweb to this checkout, so that it can check the executables)."""
import configparser
import importlib
import importlib.util
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import get_commands, load_command_class

REPO = Path(__file__).resolve().parents[2]
UNITS = sorted((REPO / "deploy" / "systemd").glob("*.service"))
PREFIX = "/opt/sesamweb"
EXPECTED = {"sesam-console.service", "sesam-events.service", "sesam-worker@.service", "sesam-device-server@.service"}


def read_unit(path):
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read_string(path.read_text())
    return parser


def commands(unit):
    for key in ("ExecStartPre", "ExecStart"):
        if unit.has_option("Service", key):
            yield shlex.split(unit.get("Service", key).replace("%i", "branch"))


def test_the_four_units_are_shipped():
    assert {u.name for u in UNITS} == EXPECTED


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_each_unit_parses_and_names_commands_that_exist(path):
    unit = read_unit(path)
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    assert unit.get("Install", "WantedBy") == "multi-user.target"
    assert unit.get("Service", "WorkingDirectory") == PREFIX
    found = list(commands(unit))
    assert found, "no ExecStart"
    for argv in found:
        assert argv[0] == f"{PREFIX}/.venv/bin/python", argv
        if argv[1] == "-m":
            module, app = argv[2], argv[-1]
            assert module == "daphne" and importlib.util.find_spec("daphne") is not None
            module_name, attribute = app.split(":")
            assert callable(getattr(importlib.import_module(module_name), attribute))
            continue
        assert argv[1] == f"{PREFIX}/manage.py" and (REPO / "manage.py").is_file()
        name, arguments = argv[2], argv[3:]
        apps = get_commands()
        assert name in apps, f"{path.name}: manage.py has no command {name}"
        command = load_command_class(apps[name], name)
        command.create_parser("manage.py", name).parse_args(arguments)     # exits (SystemExit) if they do not parse


def test_the_device_server_unit_gives_it_no_console_secret_key():
    unit = read_unit(REPO / "deploy" / "systemd" / "sesam-device-server@.service")
    environment = (REPO / "deploy" / "systemd" / "device-server.env.example").read_text()
    assert "SESAM_SECRET_KEY" not in [line.split("=")[0] for line in environment.splitlines() if "=" in line]
    assert "SESAM_DEVICE_KEY_FILE=" in unit.get("Service", "Environment")
    assert unit.get("Service", "RestartPreventExitStatus") == "2 3"       # refused / revoked: no restart loop


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_itself_verifies_the_units(tmp_path):
    for path in UNITS:
        text = (path.read_text().replace(f"{PREFIX}/.venv/bin/python", sys.executable)
                .replace(PREFIX, str(REPO)).replace("/etc/sesamweb/", f"{tmp_path}/"))
        name = path.name.replace("@.", "@branch.")
        (tmp_path / name).write_text(text)
    for env in ("sesamweb.env", "device-server.env"):
        (tmp_path / env).write_text("")
    names = [f"./{p.name}" for p in sorted(tmp_path.glob("*.service"))]
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", *names], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    # Unknown keys are only warnings to systemd: any output is a failure here.
    assert result.returncode == 0 and not result.stderr.strip() and not result.stdout.strip(), result.stderr
