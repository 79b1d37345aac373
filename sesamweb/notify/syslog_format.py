"""RFC 5424 lines: the header, structured data and one-line message shared by the
notification syslog channel (format_rfc5424 of a Message) and the audit log's forwarding
(sesamweb/audit/syslog.py: each audit event and chain checkpoint)."""
import os
import socket

from .choices import Severity

ENTERPRISE_ID = 32473  # the documentation example number of RFC 5612, as the audit log uses
SD_ID = f"sesam@{ENTERPRISE_ID}"
_SYSLOG_SEVERITY = {Severity.INFO: 6, Severity.WARNING: 4, Severity.ERROR: 3, Severity.CRITICAL: 2}


def sd_escape(value) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _printable(text: str, limit: int) -> str:
    cleaned = "".join(ch for ch in text if 33 <= ord(ch) <= 126)
    return cleaned[:limit] or "-"


def rfc5424_line(*, facility: int, severity: int, timestamp: str, app_name: str, msgid: str, sd_id: str,
                 params: dict, text: str) -> bytes:
    """One RFC 5424 message: <PRI>1 TIMESTAMP HOSTNAME APP PROCID MSGID [SD] MSG, the message
    on one line (collectors split on newlines), timestamps in UTC with "Z"."""
    data = "[%s %s]" % (sd_id, " ".join(f'{_printable(k, 32)}="{sd_escape(v)}"' for k, v in params.items()))
    header = "<%d>1 %s %s %s %d %s" % (
        facility * 8 + severity, timestamp.replace("+00:00", "Z"), _printable(socket.gethostname(), 255),
        _printable(app_name, 48), os.getpid(), _printable(msgid, 32),
    )
    return f"{header} {data} {' '.join(text.split())}".encode("utf-8")


def structured_params(message) -> dict:
    params = {"event": message.name, "severity": message.severity, "event_id": message.event_id}
    for key in ("pool", "host", "device_server", "job", "store", "run"):
        value = message.objects.get(key)
        if isinstance(value, dict) and value.get("name"):
            params[key] = value["name"]
    vms = message.objects.get("vms") or []
    if vms:
        params["vms"] = len(vms)
        params["vms_failed"] = sum(1 for vm in vms if vm.get("status") == "failed")
    if message.details.get("error"):
        params["error"] = message.details["error"]
    if message.link:
        params["link"] = message.link
    return params


def format_rfc5424(message, *, facility: int, app_name: str) -> bytes:
    return rfc5424_line(facility=facility, severity=_SYSLOG_SEVERITY.get(message.severity, 5),
                        timestamp=message.created, app_name=app_name, msgid=message.name, sd_id=SD_ID,
                        params=structured_params(message), text=message.title)
