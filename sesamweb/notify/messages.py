"""What a message says: one rendering of an event, in the forms the channels need
(email subject + plain text + HTML, a short SMS text, a JSON payload, one syslog line)."""
from dataclasses import dataclass, field

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone

from .choices import Severity

# The order objects are named in, most general first.
OBJECT_LABELS = (("pool", "Pool"), ("host", "Host"), ("device_server", "Device server"), ("job", "Job"),
                 ("store", "Data store"), ("run", "Run"), ("user", "User"), ("target", "Object"))
# The page a message links to: the run when there is one, else the object it is about.
LINK_KEYS = ("run", "target", "device_server", "store", "pool")
SMS_LIMIT = 160


def absolute_url(url: str) -> str:
    if url and url.startswith("/"):
        return settings.SESAM_BASE_URL.rstrip("/") + url
    return url or ""


def object_keys(objects: dict) -> list[str]:
    """"job:12"-style keys of every object that has an id (rules filter on them)."""
    keys = []
    for kind, value in (objects or {}).items():
        items = value if isinstance(value, list) else [value]
        singular = kind[:-1] if isinstance(value, list) and kind.endswith("s") else kind
        for item in items:
            if isinstance(item, dict) and item.get("id") not in (None, ""):
                keys.append(f"{singular}:{item['id']}")
    return keys


def _human_size(value) -> str:
    size = float(value or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


def _human_duration(seconds) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _vm_rows(objects):
    rows = []
    for vm in objects.get("vms") or []:
        row = dict(vm)
        row["url"] = absolute_url(vm.get("url", ""))
        row["size"] = _human_size(vm["bytes_stored"]) if vm.get("bytes_stored") is not None else ""
        row["duration"] = _human_duration(vm.get("duration_seconds"))
        secs, read = vm.get("duration_seconds"), vm.get("bytes_read")
        row["throughput"] = f"{_human_size(read / secs)}/s" if secs and read else ""
        rows.append(row)
    return rows


@dataclass
class Message:
    event_id: int
    name: str
    severity: str
    title: str
    created: str
    objects: dict
    details: dict
    link: str = ""
    subject: str = ""
    text: str = ""
    html: str = ""
    short: str = ""
    named: list = field(default_factory=list)  # [(label, name, url)]
    delivery_id: int | None = None
    # Recipients already reached by an earlier attempt, and how a transport records one.
    reached: set = field(default_factory=set)
    mark_reached: object = lambda recipient: None


    def payload(self) -> dict:
        """The webhook body (stable field names; documented in the README)."""
        return {"event_id": self.event_id, "delivery_id": self.delivery_id, "name": self.name,
                "severity": self.severity, "title": self.title, "created": self.created,
                "link": self.link, "objects": self.objects, "details": self.details, "text": self.text}


def build_message(event, delivery_id=None) -> Message:
    objects = event.about or {}
    named = []
    for key, label in OBJECT_LABELS:
        value = objects.get(key)
        if isinstance(value, dict) and value.get("name"):
            named.append((label, value["name"], absolute_url(value.get("url", ""))))
    linked = next((objects[key] for key in LINK_KEYS if isinstance(objects.get(key), dict)
                   and objects[key].get("url")), {})
    link = absolute_url(linked.get("url", ""))
    created = timezone.localtime(event.created)
    message = Message(event_id=event.pk, name=event.name, severity=event.severity, title=event.title,
                      created=event.created.isoformat(), objects=objects, details=event.details or {},
                      link=link, named=named, delivery_id=delivery_id)
    context = {"message": message, "event": event, "vms": _vm_rows(objects), "created": created,
               "severity_label": Severity(event.severity).label if event.severity in Severity.values else event.severity,
               "digest": (event.details or {}).get("digest")}
    message.subject = f"[sesamweb] {event.title}"[:250]
    message.text = render_to_string("notify/message.txt", context).strip() + "\n"
    message.html = render_to_string("notify/message.html", context)
    message.short = short_text(event, objects)
    return message


def short_text(event, objects) -> str:
    """An SMS: the title, then the pool / job / failed VMs, cut to one SMS."""
    parts = [event.title]
    for key in ("pool", "job", "store"):
        value = objects.get(key)
        if isinstance(value, dict) and value.get("name") and value["name"] not in event.title:
            parts.append(f"{key} {value['name']}")
    failed = [vm.get("name", "?") for vm in objects.get("vms") or [] if vm.get("status") == "failed"]
    if failed:
        parts.append("failed: " + ", ".join(failed))
    text = "; ".join(parts)
    return text if len(text) <= SMS_LIMIT else text[: SMS_LIMIT - 1] + "…"
