"""The left navigation: sections of the console and where each one lives.

Each section lists the URL names it may be registered under (apps are built in parallel
and name their list pages themselves); the first that resolves is used, and a section
whose pages do not exist yet is shown as unavailable instead of a broken link.
"""
from dataclasses import dataclass

from django.urls import NoReverseMatch, reverse

from sesamweb.accounts.roles import AUDIT, MANAGE, VIEW, user_can


@dataclass(frozen=True)
class Section:
    key: str
    label: str
    icon: str
    url_names: tuple[str, ...]
    capability: str = VIEW


SECTIONS = (
    Section("dashboard", "Dashboard", "dashboard", ("dashboard",)),
    Section("pools", "Pools", "pool", ("xenpools:pool_list", "xenpools:pool-list", "xenpools:pools", "xenpools:index")),
    Section("vms", "Virtual machines", "vm", ("xenpools:vm_list", "xenpools:vm-list", "xenpools:vms")),
    Section("backups", "Backups", "backup", ("backups:index",)),
    Section("jobs", "Jobs", "job", ("backups:job_list",)),
    Section("restore", "Restore", "restore", ("backups:restore", "backups:restore_wizard", "backups:restore-wizard", "backups:restore_start")),
    Section("replication", "Replication", "replication", ("backups:replication_list",)),
    Section("stores", "Data stores", "store", ("backups:datastore_list", "backups:datastore-list", "backups:store_list", "backups:stores")),
    Section("notifications", "Notifications", "bell", ("notify:overview",)),
    Section("audit", "Audit log", "audit", ("audit:event_list",), AUDIT),
    Section("users", "Users", "users", ("accounts:user_list",), MANAGE),
)

_resolved: dict[str, str | None] = {}


def section_url(section: Section) -> str | None:
    if section.key not in _resolved:
        url = None
        for name in section.url_names:
            try:
                url = reverse(name)
                break
            except NoReverseMatch:
                continue
        if url is None:
            return None  # not cached: the app may register it later (tests, reloads)
        _resolved[section.key] = url
    return _resolved[section.key]


def navigation(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_sections": []}
    path = request.path
    items = []
    for section in SECTIONS:
        if user_can(user, section.capability):
            items.append({"key": section.key, "label": section.label, "icon": section.icon,
                          "url": section_url(section), "active": False})
    # The most specific section wins: /pools/vms/ is "Virtual machines", not "Pools".
    matches = [item for item in items if item["url"] and (path == item["url"] if item["url"] == "/" else path.startswith(item["url"]))]
    if matches:
        max(matches, key=lambda item: len(item["url"]))["active"] = True
    return {"nav_sections": items}
