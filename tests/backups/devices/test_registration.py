"""Registration with a one-time token over the console's API: the token is kept only as a
hash, works once, for one name, until it expires or is revoked; every refusal is audited."""
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from backups.devices.models import DeviceServer, RegistrationToken
from backups.devices.registration import heartbeat, issue_token, revoke_server, revoke_token
from backups.devices.runner import DeviceServerRefused, check_may_run
from backups.devices.sealing import create_key_file, public_key_of, load_private_key
from sesamweb.audit.models import AuditEvent

REGISTER = "/api/device-servers/register/"


def post(token, name="branch", public_key=None, tmp_path=None):
    key = public_key or public_key_of(load_private_key(_key(tmp_path)))
    return APIClient().post(REGISTER, {"token": token, "name": name, "public_key": key, "address": "10.1.2.3",
                                       "version": "1.0.0", "capabilities": ["backup"]}, format="json")


def _key(tmp_path):
    path = tmp_path / "device.key"
    create_key_file(path)
    return path


def test_a_token_registers_its_device_server_once_and_is_kept_only_as_a_hash(db, tmp_path):
    row, token = issue_token("branch", site="Hamburg")
    assert token not in row.token_hash and RegistrationToken.objects.get().token_hash == RegistrationToken.hash(token)

    answer = post(token, tmp_path=tmp_path)
    assert answer.status_code == 201, answer.content
    assert answer.json() == {"name": "branch", "site": "Hamburg", "cluster_name": "device-branch"}
    server = DeviceServer.objects.get()
    assert (server.address, server.version, server.capabilities) == ("10.1.2.3", "1.0.0", ["backup"])
    row.refresh_from_db()
    assert row.state() == "used" and row.used_by == server

    again = post(token, tmp_path=tmp_path)
    assert again.status_code == 403 and "used" in again.json()["detail"]
    assert DeviceServer.objects.count() == 1


@pytest.mark.parametrize("case", ["expired", "revoked", "unknown", "other-name", "bad-key"])
def test_a_token_that_is_expired_revoked_unknown_or_for_another_name_is_refused(db, tmp_path, case):
    row, token = issue_token("branch", hours=1)
    name, key = "branch", None
    if case == "expired":
        RegistrationToken.objects.filter(pk=row.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    elif case == "revoked":
        assert revoke_token(row)
    elif case == "unknown":
        token = token[:-4] + "AAAA"
    elif case == "other-name":
        name = "elsewhere"
    elif case == "bad-key":
        key = "bm90IGEga2V5"
    answer = post(token, name=name, public_key=key, tmp_path=tmp_path)

    assert answer.status_code == 403, answer.content
    reason = {"expired": "expired", "revoked": "revoked", "unknown": "unknown registration token",
              "other-name": "made for device server branch", "bad-key": "not an X25519 key"}[case]
    assert reason in answer.json()["detail"]
    assert not DeviceServer.objects.exists()
    refusal = AuditEvent.objects.filter(outcome="denied").latest("sequence")
    assert reason in refusal.message
    if case not in ("unknown", "other-name", "bad-key"):
        row.refresh_from_db()
        assert row.used_at is None


def test_a_revoked_device_server_may_not_run_and_its_heartbeat_is_refused(make_device_server, settings):
    server = make_device_server()
    settings.SESAM_DEVICE_KEY_FILE = str(server.key_file)
    assert check_may_run("branch") == server
    assert heartbeat("branch", version="1.0.1", load={"loadavg": [0.5, 0.4, 0.3]})
    server.refresh_from_db()
    assert server.version == "1.0.1" and server.is_up()

    assert revoke_server(server)
    assert not heartbeat("branch", version="1.0.1")
    with pytest.raises(DeviceServerRefused, match="revoked"):
        check_may_run("branch")
    with pytest.raises(DeviceServerRefused, match="no device server named nowhere"):
        check_may_run("nowhere")


def test_a_node_with_another_key_may_not_run_as_the_device_server(make_device_server, settings, tmp_path):
    make_device_server()
    other = tmp_path / "other.key"
    create_key_file(other)
    settings.SESAM_DEVICE_KEY_FILE = str(other)
    with pytest.raises(DeviceServerRefused, match="is not the one device server branch registered with"):
        check_may_run("branch")


def test_the_register_command_talks_to_the_console_over_http(live_server, db, tmp_path, settings):
    """`manage.py device_server register` over real HTTP to a running console."""
    from django.core.management import call_command
    from django.core.management.base import CommandError

    settings.SESAM_DEVICE_KEY_FILE = str(tmp_path / "node.key")
    _row, token = issue_token("branch", site="Hamburg")
    call_command("device_server", "register", "branch", token=token, console=live_server.url)
    server = DeviceServer.objects.get(name="branch")
    assert server.public_key == public_key_of(load_private_key(tmp_path / "node.key"))
    assert (tmp_path / "node.key").stat().st_mode & 0o777 == 0o600

    with pytest.raises(CommandError, match="refused the registration \\(403\\).*used"):
        call_command("device_server", "register", "branch", token=token, console=live_server.url)
