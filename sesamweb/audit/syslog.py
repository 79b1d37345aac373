"""Forwarding audit events to a syslog collector (RFC 5424 over UDP).

Set SESAM_SYSLOG_ADDRESS=host:port (or [v6addr]:port). Each event is one datagram, sent
after its transaction commits; a collector that is down never blocks or fails a change.
Signed checkpoints of the chain's head (checkpoints.py) go the same way: the collector is
the witness outside the console that shows when the newest rows were deleted.
"""
import logging
import os
import socket

from django.conf import settings

logger = logging.getLogger(__name__)
_FACILITY_AUDIT = 13  # "log audit"
_SEVERITY = {"success": 5, "failure": 4, "denied": 4}  # notice / warning
_ENTERPRISE_ID = 32473  # the documentation example number of RFC 5612


def parse_address(address: str) -> tuple[str, int]:
    host, _, port = address.strip().rpartition(":")
    if not host:
        host, port = port, "514"
    return host.strip("[]"), int(port)


def _sd_escape(value) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def format_rfc5424(event) -> bytes:
    priority = _FACILITY_AUDIT * 8 + _SEVERITY.get(event.outcome, 5)
    params = {
        "seq": event.sequence,
        "actor": event.actor_username or "-",
        "source": event.source or "-",
        "outcome": event.outcome,
        "target": f"{event.target_type}:{event.target_id}" if event.target_type else "-",
        "hash": event.hash,
    }
    data = "[audit@%d %s]" % (_ENTERPRISE_ID, " ".join(f'{k}="{_sd_escape(v)}"' for k, v in params.items()))
    # One event, one line: collectors split on newlines.
    text = " ".join((event.message or event.target_repr or event.action).split())
    header = "<%d>1 %s %s sesamweb %d %s" % (
        priority,
        event.created.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        socket.gethostname() or "-",
        os.getpid(),
        event.action[:32] or "-",
    )
    return f"{header} {data} {text}".encode("utf-8")


def format_checkpoint(checkpoint) -> bytes:
    params = {"id": checkpoint.last_id, "seq": checkpoint.last_sequence, "hash": checkpoint.last_hash,
              "count": checkpoint.count, "time": checkpoint.time, "mac": checkpoint.mac}
    data = "[auditCheckpoint@%d %s]" % (_ENTERPRISE_ID, " ".join(f'{k}="{_sd_escape(v)}"' for k, v in params.items()))
    header = "<%d>1 %s %s sesamweb %d audit_checkpoint" % (
        _FACILITY_AUDIT * 8 + 5, checkpoint.time.replace("+00:00", "Z"), socket.gethostname() or "-", os.getpid())
    return f"{header} {data} Audit chain checkpoint: {checkpoint.count} events up to #{checkpoint.last_sequence}".encode()


def _send(datagram: bytes, what: str) -> None:
    address = getattr(settings, "SESAM_SYSLOG_ADDRESS", "")
    if not address:
        return
    try:
        host, port = parse_address(address)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.sendto(datagram, (host, port))
    except (OSError, ValueError) as exc:
        logger.warning("Could not forward %s to syslog %s: %s", what, address, exc)


def forward_to_syslog(event) -> None:
    if getattr(settings, "SESAM_SYSLOG_ADDRESS", ""):
        _send(format_rfc5424(event), f"audit event #{event.sequence}")


def forward_checkpoint(checkpoint) -> None:
    if getattr(settings, "SESAM_SYSLOG_ADDRESS", ""):
        _send(format_checkpoint(checkpoint), f"audit checkpoint #{checkpoint.last_sequence}")
