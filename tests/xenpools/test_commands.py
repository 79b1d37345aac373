"""manage.py add_pool and sync_inventory against the simulator."""
import pytest
from django.core.management import CommandError, call_command

from sesamweb.audit.models import AuditEvent
from xenpools.connection import fetch_fingerprint, parse_address
from xenpools.models import VM, Pool

pytestmark = pytest.mark.django_db


@pytest.fixture
def password_file(tmp_path):
    def write(password):
        path = tmp_path / "pool-password"
        path.write_text(password + "\n")
        return str(path)
    return write


def test_add_pool_registers_and_syncs_the_pool(sim, password_file, capsys):
    call_command("add_pool", "lab", sim.url, "--insecure", "--user", "root", "--password-file", password_file(sim.password))

    pool = Pool.objects.get(name="lab")
    assert pool.get_password() == sim.password and pool.health == "healthy"
    assert VM.objects.filter(pool=pool).exists()
    assert "added pool lab" in capsys.readouterr().out
    assert AuditEvent.objects.filter(action="create", source="cli").exists()


def test_add_pool_fails_clearly_on_a_wrong_password(sim, password_file):
    with pytest.raises(CommandError, match="refused the user name or password"):
        call_command("add_pool", "lab", sim.url, "--insecure", "--password-file", password_file("wrong"))
    assert not Pool.objects.exists()


def test_add_pool_fails_clearly_on_an_unreachable_address(db, password_file):
    with pytest.raises(CommandError, match="cannot reach 127.0.0.1:9: connection refused"):
        call_command("add_pool", "lab", "http://127.0.0.1:9", "--insecure", "--password-file", password_file("x"))


def test_add_pool_needs_trust_for_a_new_certificate(tls_sim, password_file):
    fingerprint = fetch_fingerprint(parse_address(tls_sim.url))

    with pytest.raises(CommandError, match=f"--trust-fingerprint {fingerprint}"):
        call_command("add_pool", "lab", tls_sim.url, "--password-file", password_file(tls_sim.password))
    call_command("add_pool", "lab", tls_sim.url, "--password-file", password_file(tls_sim.password),
                 "--trust-fingerprint")

    assert Pool.objects.get(name="lab").fingerprints["127.0.0.1"] == fingerprint


def test_add_pool_refuses_a_fingerprint_that_does_not_match(tls_sim, password_file):
    with pytest.raises(CommandError, match="not trusted"):
        call_command("add_pool", "lab", tls_sim.url, "--password-file", password_file(tls_sim.password),
                     "--trust-fingerprint", ":".join(["AB"] * 32))


def test_sync_inventory_reports_each_pool(sim, make_pool, capsys):
    make_pool(sim, sync=False)

    call_command("sync_inventory")

    assert "lab: synced" in capsys.readouterr().out


def test_sync_inventory_exits_non_zero_when_a_pool_is_unreachable(sim, make_pool):
    make_pool(sim, sync=False)
    sim.stop()

    with pytest.raises(CommandError, match="could not be synced"):
        call_command("sync_inventory", "--pool", "lab")


def test_add_pool_refuses_plain_http_without_insecure(sim, password_file):
    with pytest.raises(CommandError, match="is plain HTTP: the pool password and every backup would cross"):
        call_command("add_pool", "lab", sim.url, "--password-file", password_file(sim.password))
