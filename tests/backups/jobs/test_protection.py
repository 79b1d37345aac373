"""Protection status per VM: last good point on any store, covering jobs (explicit, rule,
excluded), the tightest RPO, met / missed / never / unprotected as of a given now."""
from datetime import datetime, timedelta, timezone

import pytest

from backups.choices import VerifyState
from backups.jobs.choices import Protection, SelectionMode
from backups.jobs.protection import counts_per_pool, protection_map, vm_ids_with, vm_protection
from backups.jobs.selection import select_vms
from backups.models import BackupJob, JobSchedule
from backups.stores import create_store
from xenpools.choices import PowerState

from .inventory import HOURS, make_point, make_pool, make_vm

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def plain_store(tmp_path, db):
    return create_store(name="plain", path=str(tmp_path / "plain"), encrypted=False)


@pytest.fixture
def other_store(tmp_path, db):
    return create_store(name="offsite", path=str(tmp_path / "offsite"), encrypted=False)


@pytest.fixture
def lab(db):
    return make_pool("lab")


def job(store, name, **fields):
    explicit = fields.pop("vms", [])
    excluded = fields.pop("excluded", [])
    pools = fields.pop("pools", [])
    fields.setdefault("selection", SelectionMode.EXPLICIT if explicit else SelectionMode.RULE)
    created = BackupJob.objects.create(name=name, store=store, **fields)
    created.vms.add(*explicit)
    created.excluded_vms.add(*excluded)
    created.rule_pools.add(*pools)
    return created


def test_a_vm_in_no_job_is_unprotected_even_with_restore_points(lab, plain_store):
    vm = make_vm(lab, "lonely")
    make_point(plain_store, vm, 2 * HOURS, now=NOW)

    state = vm_protection(vm, now=NOW)

    assert state.status == Protection.UNPROTECTED
    assert state.jobs == [] and state.rpo is None
    assert state.last_good_at == NOW - 2 * HOURS and state.age == 2 * HOURS


def test_a_covered_vm_without_a_good_point_was_never_backed_up(lab, plain_store):
    vm = make_vm(lab, "fresh")
    make_point(plain_store, vm, HOURS, now=NOW, verify_state=VerifyState.DAMAGED)
    job(plain_store, "nightly", vms=[vm], rpo_hours=24)

    state = vm_protection(vm, now=NOW)

    assert state.status == Protection.NEVER
    assert state.last_good_at is None and state.age is None


def test_rpo_is_met_within_and_missed_beyond_the_jobs_rpo(lab, plain_store):
    recent, stale = make_vm(lab, "recent"), make_vm(lab, "stale")
    make_point(plain_store, recent, 23 * HOURS, now=NOW)
    make_point(plain_store, stale, 25 * HOURS, now=NOW)
    job(plain_store, "nightly", vms=[recent, stale], rpo_hours=24)

    states = protection_map(now=NOW)

    assert states[recent.pk].status == Protection.MET
    assert states[stale.pk].status == Protection.MISSED
    # The same points are met again a day earlier: status depends on now.
    assert protection_map(now=NOW - 2 * HOURS)[stale.pk].status == Protection.MET


def test_the_last_good_point_is_the_newest_undamaged_one_on_any_store(lab, plain_store, other_store):
    vm = make_vm(lab, "db-1")
    make_point(plain_store, vm, 30 * HOURS, now=NOW)
    make_point(other_store, vm, 5 * HOURS, now=NOW, verify_state=VerifyState.OK)
    make_point(plain_store, vm, 1 * HOURS, now=NOW, verify_state=VerifyState.DAMAGED)
    job(plain_store, "nightly", vms=[vm], rpo_hours=24)

    state = vm_protection(vm, now=NOW)

    assert state.last_good_at == NOW - 5 * HOURS       # the other store's verified point counts
    assert state.status == Protection.MET


def test_the_tightest_rpo_of_the_covering_jobs_decides(lab, plain_store):
    vm = make_vm(lab, "web-1", tags=["gold"])
    make_point(plain_store, vm, 8 * HOURS, now=NOW)
    weekly = job(plain_store, "weekly", vms=[vm], rpo_hours=24 * 8)
    hourly = job(plain_store, "gold tier", rule_tags=["gold"], rpo_hours=6)

    state = vm_protection(vm, now=NOW)

    assert state.jobs == [hourly, weekly]
    assert state.rpo == timedelta(hours=6)
    assert state.status == Protection.MISSED


def test_rpo_derived_from_the_schedule_when_the_job_sets_none(lab, plain_store):
    vm = make_vm(lab, "app-1")
    make_point(plain_store, vm, 24 * HOURS + timedelta(minutes=30), now=NOW)
    nightly = job(plain_store, "nightly", vms=[vm])
    JobSchedule.objects.create(job=nightly, cron="0 22 * * *")

    state = vm_protection(vm, now=NOW)

    assert state.rpo == timedelta(hours=25)             # a day between runs, plus an hour of grace
    assert state.status == Protection.MET


def test_a_job_without_rpo_or_schedule_is_met_by_any_good_point(lab, plain_store):
    vm = make_vm(lab, "adhoc")
    job(plain_store, "by hand", vms=[vm])
    assert vm_protection(vm, now=NOW).status == Protection.NEVER
    make_point(plain_store, vm, 24 * 400 * HOURS, now=NOW)
    assert vm_protection(vm, now=NOW).status == Protection.MET


def test_coverage_by_rule_honours_pool_tag_name_power_state_and_exclusions(lab, plain_store):
    other_pool = make_pool("dr")
    web1 = make_vm(lab, "Web-1", tags=["prod", "web"])
    web2 = make_vm(lab, "web-2", tags=["prod"], power_state=PowerState.HALTED)
    web3 = make_vm(lab, "web-3", tags=["prod"])
    dr_web = make_vm(other_pool, "web-9", tags=["prod"])
    db1 = make_vm(lab, "db-1", tags=["prod"])
    untagged = make_vm(lab, "web-4")
    rule = job(plain_store, "prod web", rule_tags=["prod", "staging"], rule_name_pattern="web-?",
               rule_power_states=[PowerState.RUNNING], pools=[lab], excluded=[web3], rpo_hours=24)

    states = protection_map(now=NOW)

    covered = {vm_id for vm_id, state in states.items() if rule in state.jobs}
    assert covered == {web1.pk}
    # The same VMs a run of the job would back up now.
    assert covered == {vm.pk for vm in select_vms(rule)}
    for vm in (web2, web3, dr_web, db1, untagged):
        assert states[vm.pk].status == Protection.UNPROTECTED


def test_explicit_and_rule_coverage_agree_with_select_vms_on_a_mixed_inventory(lab, plain_store):
    vms = [make_vm(lab, f"{prefix}-{i}", tags=[tag], power_state=state)
           for i, (prefix, tag, state) in enumerate([("web", "a", PowerState.RUNNING), ("db", "b", PowerState.HALTED),
                                                     ("web", "b", PowerState.HALTED), ("app", "a", PowerState.RUNNING)])]
    jobs = [job(plain_store, "explicit", vms=vms[:2], excluded=[vms[1]]),
            job(plain_store, "tag a", rule_tags=["a"]),
            job(plain_store, "halted web", rule_name_pattern="WEB-*", rule_power_states=[PowerState.HALTED]),
            job(plain_store, "all but app", excluded=[vms[3]])]

    states = protection_map(now=NOW)

    for each in jobs:
        assert {vm_id for vm_id, state in states.items() if each in state.jobs} == {vm.pk for vm in select_vms(each)}, each


def test_a_disabled_job_covers_nothing(lab, plain_store):
    vm = make_vm(lab, "web-1")
    job(plain_store, "paused", vms=[vm], enabled=False)
    assert vm_protection(vm, now=NOW).status == Protection.UNPROTECTED


def test_deleted_vms_with_restore_points_are_listed_unprotected_with_their_last_point(lab, plain_store):
    gone = make_vm(lab, "old-web", removed_at=NOW - 48 * HOURS)
    forgotten = make_vm(lab, "old-db", removed_at=NOW - 48 * HOURS)
    make_point(plain_store, gone, 50 * HOURS, now=NOW)
    job(plain_store, "everything", vms=[gone])          # chosen by hand before it was deleted

    states = protection_map(now=NOW)

    assert forgotten.pk not in states                   # deleted and nothing to restore
    state = states[gone.pk]
    assert state.deleted and state.status == Protection.UNPROTECTED and state.jobs == []
    assert state.age == 50 * HOURS
    assert counts_per_pool(states) == {}                # deleted VMs count in no pool


def test_filters_and_counts_per_pool(lab, plain_store):
    dr = make_pool("dr")
    met, missed, never, alone = (make_vm(lab, "met"), make_vm(lab, "missed"), make_vm(dr, "never"),
                                 make_vm(dr, "alone"))
    make_point(plain_store, met, HOURS, now=NOW)
    make_point(plain_store, missed, 30 * HOURS, now=NOW)
    nightly = job(plain_store, "nightly", vms=[met, missed, never], rpo_hours=24)

    states = protection_map(now=NOW)

    assert vm_ids_with(states, status=Protection.MISSED) == [missed.pk]
    assert sorted(vm_ids_with(states, job_id=nightly.pk)) == sorted([met.pk, missed.pk, never.pk])
    assert vm_ids_with(states, status=Protection.UNPROTECTED, job_id=nightly.pk) == []
    assert counts_per_pool(states) == {lab.pk: {"protected": 1, "at_risk": 1, "unprotected": 0},
                                       dr.pk: {"protected": 0, "at_risk": 1, "unprotected": 1}}


def test_the_number_of_queries_does_not_grow_with_vms_or_jobs(lab, plain_store, django_assert_max_num_queries):
    for i in range(30):
        vm = make_vm(lab, f"web-{i}", tags=["t"])
        make_point(plain_store, vm, i * HOURS, now=NOW)
        nightly = job(plain_store, f"job {i}", vms=[vm], rpo_hours=12)
        JobSchedule.objects.create(job=nightly, cron="0 * * * *")
    job(plain_store, "tagged", rule_tags=["t"], pools=[lab])

    with django_assert_max_num_queries(7):
        states = protection_map(now=NOW)
    assert len(states) == 30
