"""Console-wide notifications (design.md section 9): apps say what happened with

    from sesamweb import notify
    notify.emit("run.failed", "error", title=..., objects={...}, details={...})

and this app decides who hears about it. It never imports backups/ or xenpools/."""


def emit(name, severity, *, title, objects=None, details=None):
    from .events import emit as _emit  # lazy: importable before the app registry is ready

    return _emit(name, severity, title=title, objects=objects, details=details)
