"""Sizes in words, the same in the web pages, the CLI and messages: decimal units (1 GB is
10^9 bytes, as disks, networks and the MB/s figures count), one decimal.

Templates: every `filesizeformat` is this function (sesamweb.units is a template builtin,
see settings.TEMPLATES), so pages need no other filter; scripts format the same way
(fileSize in static/js/backups.js, restore.js, restore_run.js)."""
from django import template

UNITS = ("kB", "MB", "GB", "TB", "PB")

register = template.Library()


def size_text(count) -> str:
    """'0 bytes', '1 byte', '999 bytes', '1.5 kB', '20.0 GB'."""
    try:
        value = float(count or 0)
    except (TypeError, ValueError):
        return "0 bytes"
    if abs(value) < 1000:
        whole = int(value)
        return "1 byte" if whole == 1 else f"{whole} bytes"
    for unit in UNITS:
        value /= 1000
        if abs(value) < 1000 or unit == UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


@register.filter(is_safe=True)
def filesizeformat(count):
    """size_text, kept on one line (a no-break space, as Django's filter)."""
    return size_text(count).replace(" ", "\u00a0")
