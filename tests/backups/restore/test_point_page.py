"""The restore point page: the disks a point holds, each restored to an SR as a new disk or
downloaded raw / VHD, from the browser (operators; auditors read the page only)."""
import pytest
from django.test import Client
from django.urls import reverse

from backups.choices import BackupMethod, RunStatus
from backups.models_restore import RestoreRun
from backups.restore.plan import run_restore
from sesamweb.accounts.roles import Role
from sesamweb.audit.models import AuditEvent
from tests.fixtures.users import TEST_PASSWORD, make_user

from .conftest import back_up

pytestmark = pytest.mark.slow       # a real backup through the simulator first (~3 s)


@pytest.fixture
def point(vm_named, store):
    return back_up(vm_named("test-vm-1"), store, BackupMethod.NORMAL).restore_point


def signed_in(role):
    client = Client()
    user = make_user(f"user-{role}", role)
    assert client.login(username=user.get_username(), password=TEST_PASSWORD)
    return client


def test_an_operator_restores_one_disk_to_an_sr_from_the_point_page(point, pool, pool_reader):
    expected = pool_reader.raw(pool_reader.disks(point.vm_uuid)["0"])
    sr = pool.srs.get(name="Shared NFS storage")
    operator = signed_in(Role.OPERATOR)
    page = operator.get(point.get_absolute_url()).content.decode()
    assert 'data-disk="vbd0"' in page and "Shared NFS storage" in page
    download = reverse("restore-point-disk-download", args=[point.pk, "vbd0"])
    assert f"{download}?format=raw" in page and f"{download}?format=vhd" in page
    assert reverse("restore-point-xva", args=[point.pk]) in page           # the whole VM as an XVA file
    assert point.get_absolute_url() in operator.get(reverse("backups:point_list")).content.decode()

    response = operator.post(reverse("backups:point_disk_restore", args=[point.pk, "vbd0"]), {"sr": sr.pk})

    run = RestoreRun.objects.get()
    assert response.status_code == 302 and response["Location"] == run.get_absolute_url()
    assert AuditEvent.objects.filter(action="restore", message__contains="restore of disk vbd0").exists()
    run = run_restore(run.pk)
    assert run.status == RunStatus.SUCCESS, run.error
    assert pool_reader.raw(run.restored_vdi_uuid) == expected
    # The download link the page shows answers with the disk (the API's download, audited there).
    raw = operator.get(f"{download}?format=raw")
    assert raw.status_code == 200 and b"".join(raw.streaming_content) == expected


def test_the_point_page_refuses_a_disk_restore_it_cannot_do(point, pool):
    operator = signed_in(Role.OPERATOR)
    iso = pool.srs.filter(content_type="iso").first()
    url = reverse("backups:point_disk_restore", args=[point.pk, "vbd7"])
    page = operator.post(url, {"sr": pool.srs.get(name="Shared NFS storage").pk}, follow=True).content.decode()
    assert "The disk was not restored: the restore point has no disk" in page
    page = operator.post(url, {}, follow=True).content.decode()
    assert "Choose the SR to restore the disk to." in page
    if iso is not None:
        page = operator.post(reverse("backups:point_disk_restore", args=[point.pk, "vbd0"]), {"sr": iso.pk},
                             follow=True).content.decode()
        assert "holds ISO images, not disks" in page


def test_an_auditor_reads_the_point_page_but_restores_and_downloads_nothing(point, pool):
    auditor = signed_in(Role.AUDITOR)
    page = auditor.get(point.get_absolute_url()).content.decode()
    assert 'data-disk="vbd0"' in page and "Restore disk" not in page and "format=raw" not in page
    assert "Download as XVA" not in page
    response = auditor.post(reverse("backups:point_disk_restore", args=[point.pk, "vbd0"]),
                            {"sr": pool.srs.first().pk})
    assert response.status_code == 403
