"""Forwarding audit events (and signed checkpoints of the chain's head) to a syslog
collector: RFC 5424 with structured data, over UDP, TCP or TLS.

    SESAM_SYSLOG_ADDRESS=host:port (or [v6addr]:port)
    SESAM_SYSLOG_PROTOCOL=udp | tcp | tls          (tcp and tls: RFC 6587 octet counting)
    SESAM_SYSLOG_CA_FILE=/path/ca.pem              (tls: the collector's CA; else the system's)

The line and the sending are the notification syslog channel's (sesamweb/notify/
syslog_format.py, transports.send_syslog). Each event is sent after its transaction commits,
with a short time-out (SESAM_SYSLOG_TIMEOUT): a collector that is down never fails a change,
it is logged. The collector is the witness outside the console that shows when the newest
rows were deleted (checkpoints.py); backup run results reach syslog through a notification
syslog channel with a rule for the run events.
"""
import logging

from django.conf import settings

logger = logging.getLogger(__name__)
_FACILITY_AUDIT = 13  # "log audit"
_SEVERITY = {"success": 5, "failure": 4, "denied": 4}  # notice / warning


def parse_address(address: str) -> tuple[str, int]:
    host, _, port = address.strip().rpartition(":")
    if not host:
        host, port = port, "514"
    return host.strip("[]"), int(port)


def format_rfc5424(event) -> bytes:
    from sesamweb.notify.syslog_format import ENTERPRISE_ID, rfc5424_line

    params = {
        "seq": event.sequence,
        "actor": event.actor_username or "-",
        "source": event.source or "-",
        "action": event.action,
        "outcome": event.outcome,
        "target": f"{event.target_type}:{event.target_id}" if event.target_type else "-",
        "target_name": event.target_repr or "-",
        "hash": event.hash,
    }
    return rfc5424_line(facility=_FACILITY_AUDIT, severity=_SEVERITY.get(event.outcome, 5),
                        timestamp=event.created.isoformat(timespec="microseconds"), app_name="sesamweb",
                        msgid=event.action[:32] or "-", sd_id=f"audit@{ENTERPRISE_ID}", params=params,
                        text=event.message or event.target_repr or event.action)


def format_checkpoint(checkpoint) -> bytes:
    from sesamweb.notify.syslog_format import ENTERPRISE_ID, rfc5424_line

    params = {"id": checkpoint.last_id, "seq": checkpoint.last_sequence, "hash": checkpoint.last_hash,
              "count": checkpoint.count, "time": checkpoint.time, "mac": checkpoint.mac}
    return rfc5424_line(facility=_FACILITY_AUDIT, severity=5, timestamp=checkpoint.time, app_name="sesamweb",
                        msgid="audit_checkpoint", sd_id=f"auditCheckpoint@{ENTERPRISE_ID}", params=params,
                        text=f"Audit chain checkpoint: {checkpoint.count} events up to #{checkpoint.last_sequence}")


def _ca_pem() -> str:
    path = getattr(settings, "SESAM_SYSLOG_CA_FILE", "")
    if not path:
        return ""
    with open(path, encoding="ascii") as pem:
        return pem.read()


def _send(line: bytes, what: str) -> None:
    from sesamweb.notify.transports import TransportError, send_syslog

    address = getattr(settings, "SESAM_SYSLOG_ADDRESS", "")
    if not address:
        return
    try:
        host, port = parse_address(address)
        protocol = getattr(settings, "SESAM_SYSLOG_PROTOCOL", "udp") or "udp"
        if protocol not in ("udp", "tcp", "tls"):
            raise ValueError(f"SESAM_SYSLOG_PROTOCOL must be udp, tcp or tls, not {protocol!r}")
        send_syslog(line, host=host, port=port, protocol=protocol,
                    timeout=getattr(settings, "SESAM_SYSLOG_TIMEOUT", 2.0), ca_pem=_ca_pem())
    except (TransportError, OSError, ValueError) as exc:
        logger.warning("Could not forward %s to syslog %s: %s", what, address, exc)


def forward_to_syslog(event) -> None:
    if getattr(settings, "SESAM_SYSLOG_ADDRESS", ""):
        _send(format_rfc5424(event), f"audit event #{event.sequence}")


def forward_checkpoint(checkpoint) -> None:
    if getattr(settings, "SESAM_SYSLOG_ADDRESS", ""):
        _send(format_checkpoint(checkpoint), f"audit checkpoint #{checkpoint.last_sequence}")
