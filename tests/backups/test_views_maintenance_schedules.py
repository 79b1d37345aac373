"""The data store page's scheduled maintenance: administrators add, change and remove verify /
gc / catalog refresh schedules (audited, kept in step with django-q2's rows); everyone who
reads the page sees each schedule's next run and last result."""
import pytest
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule

from backups.models import StoreMaintenanceSchedule
from sesamweb.audit.models import AuditEvent
from tests.backups.test_views import data_store  # noqa: F401 - fixture


def add(client, store, **fields):
    data = {"new-action": "verify", "new-cron": "0 3 * * 0", "new-timezone": "Europe/Berlin", "new-enabled": "on",
            "new-older_than_days": "30"}
    data.update({f"new-{k}": v for k, v in fields.items()})
    return client.post(reverse("backups:maintenance_schedule_add", args=[store.pk]), data)


def test_an_administrator_schedules_a_verify_of_points_not_verified_for_30_days(admin_client, data_store):  # noqa: F811
    response = add(admin_client, data_store)
    assert response.status_code == 302 and response["Location"].endswith("#maintenance-schedules")

    maintenance = StoreMaintenanceSchedule.objects.get()
    assert (maintenance.action, maintenance.cron, maintenance.timezone) == ("verify", "0 3 * * 0", "Europe/Berlin")
    assert maintenance.options == {"older_than_days": 30}
    row = Schedule.objects.get(pk=maintenance.q_schedule_id)
    assert (row.func, row.args, row.cron) == ("backups.tasks.run_store_maintenance", f"({maintenance.pk},)", "0 3 * * 0")
    assert row.next_run > timezone.now()
    event = AuditEvent.objects.get(action="create", target_type="backups.storemaintenanceschedule")
    assert event.actor == admin_client.user and "Verify of data store nas scheduled" in event.message

    page = admin_client.get(data_store.get_absolute_url()).content.decode()
    assert "of points not verified for 30 days" in page and "Not run yet" in page
    assert "At 03:00, only on Sunday" in page


def test_a_bad_cron_expression_is_refused_with_the_reason(admin_client, data_store):  # noqa: F811
    response = add(admin_client, data_store, cron="0 25 * * *")
    assert response.status_code == 400
    assert "is not a valid cron expression" in response.content.decode()
    assert not StoreMaintenanceSchedule.objects.exists()
    assert not AuditEvent.objects.filter(target_type="backups.storemaintenanceschedule").exists()


def test_changing_and_removing_a_schedule_keeps_django_q2_in_step(admin_client, data_store):  # noqa: F811
    add(admin_client, data_store, action="gc")
    maintenance = StoreMaintenanceSchedule.objects.get()
    edit = reverse("backups:maintenance_schedule_edit", args=[data_store.pk, maintenance.pk])
    assert admin_client.get(edit).status_code == 200

    response = admin_client.post(edit, {"action": "gc", "cron": "30 1 * * *", "timezone": "UTC"})   # disabled
    assert response.status_code == 302
    maintenance.refresh_from_db()
    assert (maintenance.cron, maintenance.enabled, maintenance.q_schedule_id) == ("30 1 * * *", False, None)
    assert not Schedule.objects.filter(func="backups.tasks.run_store_maintenance").exists()

    admin_client.post(edit, {"action": "gc", "cron": "30 1 * * *", "timezone": "UTC", "enabled": "on"})
    maintenance.refresh_from_db()
    assert Schedule.objects.get(pk=maintenance.q_schedule_id).cron == "30 1 * * *"
    assert AuditEvent.objects.filter(action="update", target_type="backups.storemaintenanceschedule").count() == 2

    admin_client.post(reverse("backups:maintenance_schedule_remove", args=[data_store.pk, maintenance.pk]))
    assert not StoreMaintenanceSchedule.objects.exists()
    assert not Schedule.objects.filter(func="backups.tasks.run_store_maintenance").exists()
    assert AuditEvent.objects.filter(action="delete", target_type="backups.storemaintenanceschedule").exists()


def test_operators_and_auditors_see_the_last_result_but_cannot_change_schedules(
        admin_client, operator_client, auditor_client, data_store):  # noqa: F811
    add(admin_client, data_store, action="refresh")
    maintenance = StoreMaintenanceSchedule.objects.get()
    StoreMaintenanceSchedule.objects.filter(pk=maintenance.pk).update(
        last_started_at=timezone.now(), last_finished_at=timezone.now(), last_ok=True,
        last_result="catalog refreshed: 2 restore point(s) added, 0 removed")
    for client in (operator_client, auditor_client):
        page = client.get(data_store.get_absolute_url()).content.decode()
        assert "catalog refreshed: 2 restore point(s) added" in page
        assert "Add schedule" not in page
        assert add(client, data_store).status_code == 403
        edit = reverse("backups:maintenance_schedule_edit", args=[data_store.pk, maintenance.pk])
        assert client.get(edit).status_code == 403
        assert client.post(reverse("backups:maintenance_schedule_remove",
                                   args=[data_store.pk, maintenance.pk])).status_code == 403
    assert StoreMaintenanceSchedule.objects.count() == 1


@pytest.mark.parametrize("other", ["/backups/stores/999/schedules/1/"])
def test_a_schedule_of_another_store_is_not_found(admin_client, data_store, other):  # noqa: F811
    assert admin_client.get(other).status_code == 404
