"""RFC 5424 lines for notification events: header, structured data, one-line message."""
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


def structured_params(message) -> dict:
    params = {"event": message.name, "severity": message.severity, "event_id": message.event_id}
    for key in ("pool", "host", "job", "store", "run"):
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
    priority = facility * 8 + _SYSLOG_SEVERITY.get(message.severity, 5)
    data = "[%s %s]" % (SD_ID, " ".join(f'{k}="{sd_escape(v)}"' for k, v in structured_params(message).items()))
    header = "<%d>1 %s %s %s %d %s" % (
        priority, message.created.replace("+00:00", "Z"), _printable(socket.gethostname(), 255),
        _printable(app_name, 48), os.getpid(), _printable(message.name, 32),
    )
    text = " ".join(message.title.split())  # one event, one line
    return f"{header} {data} {text}".encode("utf-8")
