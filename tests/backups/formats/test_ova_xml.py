import pytest

from backups.formats.xva import XvaError, parse_ova_xml, rewrite_ova_xml
from tests.backups.formats.ova_sample import make_ova_xml

GiB = 1 << 30


def sample():
    return make_ova_xml({"Ref:8": 20 * GiB, "Ref:12": 100 * GiB}, first_ref=40)


def test_it_finds_the_vm_its_disks_vifs_and_networks():
    meta = parse_ova_xml(sample())
    assert meta.export_vsn == 2
    assert meta.vm["name_label"] == "web01"
    assert int(meta.vm["memory_static_max"]) == 4 * GiB
    disks = meta.disks()
    # stream order is lexicographic: Ref:12 before Ref:8; the empty CD is not a disk
    assert [(d.ref, d.virtual_size, d.userdevice, d.bootable) for d in disks] == [
        ("Ref:12", 100 * GiB, "1", False), ("Ref:8", 20 * GiB, "0", True)]
    assert [(v["device"], v["MAC"]) for v in meta.vifs] == [
        ("0", "76:3a:11:00:00:01"), ("1", "76:3a:11:00:00:02")]
    networks = meta.networks
    assert networks[meta.vifs[1]["network"]]["name_label"] == "Backup VLAN 42"
    assert networks[meta.vifs[0]["network"]]["bridge"] == "xenbr0"
    assert meta.vm["name_description"] == "Web front end <prod> & friends"


def test_it_refuses_xml_with_entities():
    evil = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            b"<value><struct><member><name>version</name><value>&e;</value></member>"
            b"</struct></value>")
    with pytest.raises(XvaError, match="entities"):
        parse_ova_xml(evil)


def test_it_refuses_a_document_that_is_not_ova_xml():
    with pytest.raises(XvaError, match="version / objects"):
        parse_ova_xml(b"<value><struct></struct></value>")
    with pytest.raises(XvaError, match="not a valid XML-RPC"):
        parse_ova_xml(b"<value><struct>")


def test_rewrite_renames_and_can_keep_identity():
    meta = parse_ova_xml(rewrite_ova_xml(sample(), new_name="web01 (restored 2026-11-25)",
                                          keep_identity=True))
    assert meta.vm["name_label"] == "web01 (restored 2026-11-25)"
    assert [v["MAC"] for v in meta.vifs] == ["76:3a:11:00:00:01", "76:3a:11:00:00:02"]
    assert meta.vm["other_config"]["mac_seed"]
    assert [d.ref for d in meta.disks()] == ["Ref:12", "Ref:8"]


def test_rewrite_with_new_identity_blanks_macs_and_mac_seed():
    meta = parse_ova_xml(rewrite_ova_xml(sample(), keep_identity=False))
    assert [v["MAC"] for v in meta.vifs] == ["", ""]
    assert "mac_seed" not in meta.vm["other_config"]


def test_rewrite_maps_networks_by_name_and_drops_vifs():
    data = rewrite_ova_xml(sample(), keep_identity=True, network_map={
        "Backup VLAN 42": {"name_label": "DR backup net", "bridge": "xapi7"}}, drop_vifs=["0"])
    meta = parse_ova_xml(data)
    assert [v["device"] for v in meta.vifs] == ["1"]
    assert len(meta.vm["VIFs"]) == 1
    target = meta.networks[meta.vifs[0]["network"]]
    assert (target["name_label"], target["bridge"]) == ("DR backup net", "xapi7")
    with pytest.raises(XvaError, match="no network named"):
        rewrite_ova_xml(sample(), keep_identity=True, network_map={"nope": {"name_label": "x"}})


def test_rewrite_keeps_large_integers_and_dates_intact():
    meta = parse_ova_xml(rewrite_ova_xml(sample(), keep_identity=True))
    assert int(meta.vm["memory_static_max"]) == 4 * GiB
    assert str(meta.vm["snapshot_time"]) == "19700101T00:00:00Z"
    assert {d.ref: d.virtual_size for d in meta.disks()} == {"Ref:12": 100 * GiB,
                                                             "Ref:8": 20 * GiB}
