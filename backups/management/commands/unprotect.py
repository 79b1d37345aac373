from .protect import Command as ProtectCommand


class Command(ProtectCommand):
    help = "Lift the protection of a restore point: retention may prune it again (audited)."
    protect = False
