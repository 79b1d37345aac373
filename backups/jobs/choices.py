from django.db import models


class SelectionMode(models.TextChoices):
    EXPLICIT = "explicit", "Chosen VMs"
    RULE = "rule", "VMs matching a rule (evaluated at each run)"


class ScheduleKind(models.TextChoices):
    AUTO = "auto", "Incremental where possible (full when the job's rules say so)"
    FULL = "full", "Always full"


class Protection(models.TextChoices):
    """A VM's recovery point objective as of now."""

    MET = "met", "RPO met"
    MISSED = "missed", "RPO missed"
    NEVER = "never", "Never backed up"
    UNPROTECTED = "unprotected", "In no job"

    @classmethod
    def badge(cls, value):
        return {cls.MET: "ok", cls.MISSED: "danger", cls.NEVER: "warn", cls.UNPROTECTED: "muted"}.get(value, "muted")


WEEKDAYS = [(0, "Monday"), (1, "Tuesday"), (2, "Wednesday"), (3, "Thursday"), (4, "Friday"), (5, "Saturday"),
            (6, "Sunday")]
