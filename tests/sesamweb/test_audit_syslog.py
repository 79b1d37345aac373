"""Audit events and chain checkpoints to a real syslog collector on loopback, over UDP, TCP
and TLS (sesamweb/audit/syslog.py, sending through the notification syslog code)."""
import pytest

from sesamweb.audit.choices import AuditAction, AuditOutcome
from sesamweb.audit.log import record_event
from tests.fixtures.receivers import SelfSignedCert, SyslogReceiver, free_port, wait_for

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("protocol", ["udp", "tcp", "tls"])
def test_each_audit_event_and_checkpoint_reaches_the_collector_with_structured_data(
        protocol, settings, tmp_path, django_capture_on_commit_callbacks):
    cert = SelfSignedCert(tmp_path)
    with SyslogReceiver(protocol, cert=cert) as collector:
        settings.SESAM_SYSLOG_ADDRESS = f"127.0.0.1:{collector.port}"
        settings.SESAM_SYSLOG_PROTOCOL = protocol
        settings.SESAM_SYSLOG_CA_FILE = str(cert.cert_path) if protocol == "tls" else ""
        with django_capture_on_commit_callbacks(execute=True):
            event = record_event(AuditAction.RESTORE, actor="alice", source="198.51.100.7",
                                 target_type="backups.restorerun", target_id="12", target_repr="Restore run #12",
                                 outcome=AuditOutcome.FAILURE, message="Restore of web-1 failed:\nSR full")
        records = wait_for(lambda: collector.records if len(collector.records) >= 2 else None,
                           message=f"the event and its checkpoint over {protocol}")
        assert not collector.errors
    line, checkpoint = records
    assert (line["facility"], line["severity"]) == (13, 4)  # log audit, warning
    assert (line["app_name"], line["msgid"]) == ("sesamweb", "restore")
    data = line["sd"]["audit@32473"]
    assert data == {"seq": str(event.sequence), "actor": "alice", "source": "198.51.100.7", "action": "restore",
                    "outcome": "failure", "target": "backups.restorerun:12", "target_name": "Restore run #12",
                    "hash": event.hash}
    assert line["msg"] == "Restore of web-1 failed: SR full"  # one line
    assert checkpoint["msgid"] == "audit_checkpoint"
    assert checkpoint["sd"]["auditCheckpoint@32473"]["hash"] == event.hash


def test_an_untrusted_or_absent_collector_is_logged_and_the_change_stands(settings, tmp_path, caplog,
                                                                         django_capture_on_commit_callbacks):
    cert = SelfSignedCert(tmp_path)
    with SyslogReceiver("tls", cert=cert) as collector:  # no CA given: the system's CAs do not know it
        settings.SESAM_SYSLOG_ADDRESS, settings.SESAM_SYSLOG_PROTOCOL = f"127.0.0.1:{collector.port}", "tls"
        with django_capture_on_commit_callbacks(execute=True):
            first = record_event(AuditAction.UPDATE, target_type="t", target_id="1")
    assert collector.records == [] and "not trusted" in caplog.text
    settings.SESAM_SYSLOG_ADDRESS, settings.SESAM_SYSLOG_PROTOCOL = f"127.0.0.1:{free_port()}", "tcp"
    with django_capture_on_commit_callbacks(execute=True):
        second = record_event(AuditAction.UPDATE, target_type="t", target_id="2")
    assert second.sequence == first.sequence + 1 and "could not send to syslog" in caplog.text
