"""The restore wizard's pages: who may use them, each step's checks shown next to the field
they concern, and the final "Start restore" saving a RestoreRun with the chosen plan."""
import uuid

import pytest
from django.urls import reverse
from django.utils import timezone

from backups.choices import BackupMethod, RunStatus, Trigger, VerifyState
from backups.models import RestorePoint, RestoreRun
from backups.restore.views import SESSION_KEY
from backups.services import request_backup, run_in_this_process
from xenpools.inventory import sync_pool
from xenpools.models import VM, Pool, StorageRepository

STEP_URLS = ["backups:restore", "backups:restore_point", "backups:restore_target",
             "backups:restore_options", "backups:restore_review"]


def back_up(vm, store, method=BackupMethod.NORMAL):
    run = run_in_this_process(request_backup(vm=vm, store=store, method=method, trigger=Trigger.CLI))
    vm_backup = run.vm_backups.get()
    assert vm_backup.status == RunStatus.SUCCESS, vm_backup.error
    return vm_backup.restore_point


@pytest.fixture
def point(vm_named, store):
    """A restore point of test-vm-2 (halted, still in the pool), made by the backup engine."""
    return back_up(vm_named("test-vm-2"), store)


def fake_point(store, vm_uuid, name, pool_uuid="", **fields):
    """An index row only (no manifest): enough for the VM search of step 1."""
    return RestorePoint.objects.create(
        store=store, point_id=f"{vm_uuid}/{uuid.uuid4().hex[:8]}", vm_uuid=vm_uuid, vm_name=name,
        pool_uuid=pool_uuid, taken_at=fields.pop("taken_at", timezone.now()), method=BackupMethod.NORMAL,
        kind="full", virtual_size=8 << 20, **fields)


def open_target_step(client, point):
    """Jump in as the VM page does (?point=), landing on step 3."""
    response = client.get(reverse("backups:restore") + f"?point={point.pk}")
    assert response.status_code == 302 and response.url == reverse("backups:restore_target")
    return client.get(response.url)


def target_data(form, **changes):
    data = {name: ("" if value is None else value) for name, value in form.initial.items()}
    data.update(changes)
    return data


def options_data(**changes):
    return {"identity": "new", "name": "restored-web", "start_mode": "halted", **changes}


def walk_to_review(client, point, **options):
    page = open_target_step(client, point)
    response = client.post(reverse("backups:restore_target"), target_data(page.context["form"]))
    assert response.status_code == 302, response.context["form"].errors
    response = client.post(reverse("backups:restore_options"), options_data(**options))
    assert response.status_code == 302, response.context["form"].errors
    assert response.url == reverse("backups:restore_review")


# --- permissions ------------------------------------------------------------------------------
def test_an_auditor_gets_403_on_every_step(auditor_client):
    for name in STEP_URLS:
        assert auditor_client.get(reverse(name)).status_code == 403
        assert auditor_client.post(reverse(name), {}).status_code == 403


def test_a_visitor_who_is_not_signed_in_is_sent_to_sign_in(client, db):
    response = client.get(reverse("backups:restore"))
    assert response.status_code == 302 and "/sign-in/" in response.url


def test_an_operator_cannot_skip_ahead_of_the_steps(operator_client):
    response = operator_client.get(reverse("backups:restore_review"))
    assert response.status_code == 302 and response.url == reverse("backups:restore")


# --- step 1 ----------------------------------------------------------------------------------
def test_step_1_lists_backed_up_vms_grouped_including_deleted_ones(operator_client, store):
    pool = Pool.objects.create(name="lab", address="127.0.0.1", uuid=str(uuid.uuid4()))
    live_uuid, gone_uuid = str(uuid.uuid4()), str(uuid.uuid4())
    VM.objects.create(pool=pool, uuid=live_uuid, ref="OpaqueRef:1", name="web-01", power_state="Running")
    for days in (3, 2, 1):
        fake_point(store, live_uuid, "web-01", pool.uuid, taken_at=timezone.now() - timezone.timedelta(days=days))
    fake_point(store, gone_uuid, "old-db", pool.uuid)

    response = operator_client.get(reverse("backups:restore"))

    assert response.status_code == 200
    groups = {group["vm_uuid"]: group for group in response.context["groups"]}
    assert groups[live_uuid]["points"] == 3 and not groups[live_uuid]["deleted"]
    assert groups[live_uuid]["pool"] == pool
    assert groups[gone_uuid]["deleted"] and groups[gone_uuid]["pool"] == pool
    assert "Deleted from pool" in response.content.decode()

    found = operator_client.get(reverse("backups:restore") + "?q=old")
    assert [g["vm_uuid"] for g in found.context["groups"]] == [gone_uuid]
    by_uuid = operator_client.get(reverse("backups:restore") + f"?q={live_uuid[:13]}")
    assert [g["vm_uuid"] for g in by_uuid.context["groups"]] == [live_uuid]


def test_step_1_requires_a_vm_and_refuses_an_unknown_one(operator_client, store):
    fake_point(store, str(uuid.uuid4()), "web-01")

    nothing = operator_client.post(reverse("backups:restore"), {})
    assert nothing.status_code == 200
    assert nothing.context["form"].errors["vm"] == ["Choose the virtual machine to restore."]
    assert 'id="id_vm_error"' in nothing.content.decode()

    unknown = operator_client.post(reverse("backups:restore"), {"vm": "no-such-uuid"})
    assert "no restore point of a VM with UUID no-such-uuid" in unknown.context["form"].errors["vm"][0]
    jump = operator_client.get(reverse("backups:restore") + "?vm=no-such-uuid")
    assert jump.status_code == 200 and jump.context["form"].errors["vm"]


def test_step_1_links_jump_to_step_2_by_vm_and_to_step_3_by_point(operator_client, point):
    by_vm = operator_client.get(reverse("backups:restore") + f"?vm={point.vm_uuid}")
    assert by_vm.status_code == 302 and by_vm.url == reverse("backups:restore_point")
    step_2 = operator_client.get(by_vm.url)
    assert step_2.status_code == 200 and list(step_2.context["days"].values()) == [[point]]

    page = open_target_step(operator_client, point)
    assert page.status_code == 200
    assert operator_client.session[SESSION_KEY]["point"] == point.pk


# --- step 2 ----------------------------------------------------------------------------------
def test_step_2_refuses_a_damaged_point_with_the_reason(operator_client, point):
    RestorePoint.objects.filter(pk=point.pk).update(verify_state=VerifyState.DAMAGED)
    operator_client.get(reverse("backups:restore") + f"?vm={point.vm_uuid}")

    page = operator_client.get(reverse("backups:restore_point"))
    assert "it cannot be restored" in page.content.decode()
    response = operator_client.post(reverse("backups:restore_point"), {"point": point.pk})

    assert response.status_code == 200
    assert "is damaged" in response.context["form"].errors["point"][0]
    assert "point" not in operator_client.session[SESSION_KEY]


def test_step_2_explains_a_point_whose_manifest_cannot_be_read(operator_client, point, store):
    unreadable = fake_point(store, point.vm_uuid, point.vm_name, point.pool_uuid)   # no manifest on the store
    operator_client.get(reverse("backups:restore") + f"?vm={point.vm_uuid}")

    response = operator_client.post(reverse("backups:restore_point"), {"point": unreadable.pk})
    assert response.status_code == 200
    assert "cannot be read" in response.context["form"].errors["point"][0]

    jump = operator_client.get(reverse("backups:restore") + f"?point={unreadable.pk}", follow=True)
    assert jump.redirect_chain[-1][0] == reverse("backups:restore_point")
    assert "cannot be read" in jump.content.decode()


# --- step 3 ----------------------------------------------------------------------------------
def test_step_3_shows_free_space_and_refuses_a_full_sr(operator_client, point, pool, sim):
    page = open_target_step(operator_client, point)
    form = page.context["form"]
    sr = StorageRepository.objects.get(pk=form.initial["sr_vbd0"])
    assert [row["sr"] for row in page.context["storage"] if row["needed"]] == [sr]
    assert 'role="meter"' in page.content.decode()

    sim.control.fill_sr(sr.uuid, 1 << 20)        # 1 MiB left; the disk is bigger
    sync_pool(pool)
    response = operator_client.post(reverse("backups:restore_target"), target_data(form))

    assert response.status_code == 200
    assert "free" in response.context["form"].errors["sr_vbd0"][0]
    assert 'aria-describedby="id_sr_vbd0_error"' in response.content.decode()


def test_step_3_rebuilds_storage_and_networks_when_another_pool_is_chosen(operator_client, point):
    other = Pool.objects.create(name="dr-site", address="127.0.0.9", uuid=str(uuid.uuid4()))
    dr_sr = StorageRepository.objects.create(pool=other, uuid=str(uuid.uuid4()), ref="OpaqueRef:sr", name="DR storage",
                                             content_type="user", shared=True, physical_size=1 << 40)
    page = open_target_step(operator_client, point)
    old_form = page.context["form"]
    vif_field = next(name for name in old_form.fields if name.startswith("network_"))

    response = operator_client.post(reverse("backups:restore_target"),
                                    target_data(old_form, target_pool=other.pk))

    assert response.status_code == 200
    form = response.context["form"]
    assert form.pool == other and not form.is_bound
    assert form.initial["sr_vbd0"] == dr_sr.pk
    assert vif_field not in form.initial, "no network of that name or bridge in dr-site: the user chooses"
    assert "now come from pool dr-site" in response.content.decode()

    unchosen = operator_client.post(reverse("backups:restore_target"), target_data(form))
    assert "choose one, or leave the interface out" in unchosen.context["form"].errors[vif_field][0]
    response = operator_client.post(reverse("backups:restore_target"), target_data(form, **{vif_field: "none"}))
    assert response.status_code == 302 and response.url == reverse("backups:restore_options")
    state = operator_client.session[SESSION_KEY]
    assert state["target_pool"] == other.pk and state["sr_by_disk"] == {"vbd0": dr_sr.pk}


def test_a_link_to_a_restore_point_that_no_longer_exists_says_so(operator_client, db):
    response = operator_client.get(reverse("backups:restore") + "?point=987654", follow=True)
    assert "no longer exists" in response.content.decode()


def test_step_3_can_leave_an_interface_out(operator_client, point):
    form = open_target_step(operator_client, point).context["form"]
    vif_fields = [name for name in form.fields if name.startswith("network_")]
    assert vif_fields, "test-vm-2 has network interfaces"

    response = operator_client.post(reverse("backups:restore_target"),
                                    target_data(form, **{vif_fields[0]: "none"}))

    assert response.status_code == 302
    assert operator_client.session[SESSION_KEY]["network_by_vif"][vif_fields[0][len("network_"):]] is None


# --- step 4 ----------------------------------------------------------------------------------
def test_step_4_refuses_keeping_the_identity_next_to_the_original(operator_client, point):
    page = open_target_step(operator_client, point)
    operator_client.post(reverse("backups:restore_target"), target_data(page.context["form"]))

    response = operator_client.post(reverse("backups:restore_options"), options_data(identity="keep"))

    assert response.status_code == 200
    assert "still exists" in response.context["form"].errors["identity"][0]
    assert "duplicate MAC addresses" in response.content.decode()


def test_step_4_replaces_the_original_only_with_its_identity_and_warns_on_review(operator_client, point):
    page = open_target_step(operator_client, point)
    operator_client.post(reverse("backups:restore_target"), target_data(page.context["form"]))

    refused = operator_client.post(reverse("backups:restore_options"),
                                   options_data(identity="new", replace_original="on"))
    assert "needs 'keep the original UUID" in refused.context["form"].errors["replace_original"][0]
    assert 'aria-describedby="replace-warning id_replace_original_error"' in refused.content.decode()

    accepted = operator_client.post(reverse("backups:restore_options"),
                                    options_data(identity="keep", replace_original="on"))
    assert accepted.status_code == 302     # test-vm-2 is halted: it may be replaced
    review = operator_client.get(reverse("backups:restore_review")).content.decode()
    assert "will be destroyed" in review


def test_step_4_refuses_resuming_a_point_without_memory(operator_client, point):
    page = open_target_step(operator_client, point)
    operator_client.post(reverse("backups:restore_target"), target_data(page.context["form"]))

    response = operator_client.post(reverse("backups:restore_options"), options_data(start_mode="resume"))

    assert response.status_code == 200
    assert "no memory image" in response.context["form"].errors["start_mode"][0]


def test_a_live_memory_point_can_be_resumed_and_asks_where_its_memory_image_goes(operator_client, vm_named, store):
    memory_point = back_up(vm_named("test-vm-1"), store, BackupMethod.MEMORY)
    page = open_target_step(operator_client, memory_point)
    assert "sr_suspend" in page.context["form"].fields
    assert "memory image" in page.context["form"].fields["sr_suspend"].label
    operator_client.post(reverse("backups:restore_target"), target_data(page.context["form"]))

    options = operator_client.get(reverse("backups:restore_options"))
    assert options.context["has_memory"]
    response = operator_client.post(reverse("backups:restore_options"), options_data(start_mode="resume"))

    assert response.status_code == 302
    review = operator_client.get(reverse("backups:restore_review"))
    assert review.context["plan"].start_mode == "resume" and not review.context["problems"]
    assert [disk.key for disk, _sr in review.context["disks"]][-1] == "suspend"


# --- step 5 ----------------------------------------------------------------------------------
def test_step_5_refuses_a_name_taken_since_step_4(operator_client, point, pool):
    walk_to_review(operator_client, point, name="restored-web")
    assert not operator_client.get(reverse("backups:restore_review")).context["problems"]
    VM.objects.create(pool=pool, uuid=str(uuid.uuid4()), ref="OpaqueRef:new", name="restored-web")

    response = operator_client.post(reverse("backups:restore_review"))

    assert response.status_code == 200 and response.context["refused"]
    messages = [item["problem"].message for item in response.context["problems"]]
    assert any("already exists" in message for message in messages)
    assert f'href="{reverse("backups:restore_options")}"' in response.content.decode()
    assert not RestoreRun.objects.exists()


def test_start_restore_saves_the_plan_and_opens_the_progress_page(operator_client, point, pool):
    page = open_target_step(operator_client, point)
    form = page.context["form"]
    sr = StorageRepository.objects.get(pk=form.initial["sr_vbd0"])
    walk_to_review(operator_client, point, name="restored-web", start_mode="running", disconnect_vifs="on")

    response = operator_client.post(reverse("backups:restore_review"))

    run = RestoreRun.objects.get()
    assert response.status_code == 302 and response.url == reverse("backups:restore_run", args=[run.pk])
    assert run.point == point and run.target_pool == pool and run.status == RunStatus.QUEUED
    assert run.requested_by == operator_client.user
    assert run.plan["name"] == "restored-web" and run.plan["start_mode"] == "running"
    assert run.plan["identity"] == "new" and run.plan["disconnect_vifs"] is True
    assert run.plan["sr_by_disk"]["vbd0"] == sr.uuid
    assert SESSION_KEY not in operator_client.session

    progress = operator_client.get(response.url)
    assert progress.status_code == 200
    assert f'data-restore-run="{run.pk}"' in progress.content.decode()
    status = operator_client.get(response.url + "?format=json").json()
    assert status["status"] == "queued" and status["bytes_total"] == run.bytes_total > 0


def test_use_this_pool_with_the_same_pool_only_reloads_the_step(operator_client, point):
    form = open_target_step(operator_client, point).context["form"]

    response = operator_client.post(reverse("backups:restore_target"), target_data(form, change_pool="1"))

    assert response.status_code == 200 and response.context["form"].pool == form.pool
    assert not operator_client.session[SESSION_KEY].get("done", []).count(3)


def test_step_1_lists_recent_restores_with_their_status(operator_client, point):
    walk_to_review(operator_client, point, name="restored-web")
    operator_client.post(reverse("backups:restore_review"))
    run = RestoreRun.objects.get()

    page = operator_client.get(reverse("backups:restore")).content.decode()

    assert f'href="{run.get_absolute_url()}"' in page and "as restored-web" in page


def test_the_progress_page_is_readable_by_an_auditor_who_cannot_cancel(auditor_client, operator_client, point):
    walk_to_review(operator_client, point)
    operator_client.post(reverse("backups:restore_review"))
    run = RestoreRun.objects.get()

    page = auditor_client.get(reverse("backups:restore_run", args=[run.pk]))
    assert page.status_code == 200 and not page.context["can_cancel"]
    assert auditor_client.post(reverse("backups:restore_run_cancel", args=[run.pk])).status_code == 403

    operator_client.post(reverse("backups:restore_run_cancel", args=[run.pk]))
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
