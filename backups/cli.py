"""What the backup commands share: finding VMs and stores by name, and a terminal progress bar."""
import os
import shutil
import sys
import time

from django.core.management.base import CommandError, OutputWrapper

from sesamweb.units import size_text
from xenpools.models import VM

from .models import DataStore


def find_store(name):
    try:
        return DataStore.objects.get(name=name)
    except DataStore.DoesNotExist:
        names = ", ".join(DataStore.objects.values_list("name", flat=True)) or "none yet (manage.py add_store)"
        raise CommandError(f"no data store named {name!r}; data stores: {names}") from None


def find_vm(text):
    """A VM by uuid or by name; a name that several VMs share must be given as a uuid."""
    vms = VM.objects.filter(is_snapshot=False).select_related("pool")
    by_uuid = list(vms.filter(uuid=text))
    matches = by_uuid or list(vms.filter(name=text, removed_at__isnull=True))
    if not matches:
        raise CommandError(f"no VM with uuid or name {text!r} in the inventory (manage.py sync_inventory?)")
    if len(matches) > 1:
        listing = "; ".join(f"{vm.uuid} in pool {vm.pool}" for vm in matches)
        raise CommandError(f"several VMs are named {text!r}: give the uuid ({listing})")
    return matches[0]


human_bytes = size_text     # the CLI says sizes as the web pages do (sesamweb/units.py)


class ProgressBar:
    """One line that redraws itself on a terminal; plain lines now and then otherwise. Never
    an empty line: the bar's line ends only if a bar was drawn."""

    def __init__(self, stream=None, label="", clock=time.monotonic):
        self.stream = stream or sys.stdout
        self.label = label
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.clock = clock
        self.last_line = None
        self.drawn = False          # a bar is on the current terminal line

    def _write(self, text):
        # Django's OutputWrapper (a command's self.stdout) ends every write with a newline
        # unless told otherwise: that broke the redraw into one line per update.
        if isinstance(self.stream, OutputWrapper):
            self.stream.write(text, ending="")
        else:
            self.stream.write(text)
        self.stream.flush()

    def update(self, fraction, detail=""):
        fraction = max(0.0, min(1.0, fraction))
        line = f"{self.label} {fraction * 100:5.1f}% {detail}".rstrip()
        if self.tty:
            width = max(10, min(40, shutil.get_terminal_size((80, 20)).columns - 60))
            filled = int(width * fraction)
            bar = "#" * filled + "-" * (width - filled)
            self._write(f"\r{self.label} [{bar}] {fraction * 100:5.1f}% {detail}"[:200].ljust(100))
            self.drawn = True
        elif self.last_line is None or self.clock() - self.last_line > 10:
            self.last_line = self.clock()
            self._write(line + "\n")

    def note(self, text):
        """A line of its own above the bar (the bar is drawn again at the next update)."""
        self._write(("\r" + text.ljust(100) if self.tty and self.drawn else text) + "\n")
        self.drawn = False

    def done(self):
        if self.tty and self.drawn:
            self._write("\n")
        self.drawn = False


def write_stream_to_file(stdout, path, blocks, length, label):
    """Write a streamed download to a new file with a progress bar; a failure removes the
    partial file (CommandError says why). Returns the bytes written."""
    from django.core.management.base import CommandError

    from .repository import RepositoryError

    if os.path.exists(path):
        raise CommandError(f"{path} exists already")
    bar = ProgressBar(stdout, label=label)
    written = 0
    try:
        with open(path, "xb") as output:
            for block in blocks:
                output.write(block)
                written += len(block)
                bar.update(written / length if length else 1.0, human_bytes(written))
    except (RepositoryError, OSError) as exc:
        os.unlink(path)
        raise CommandError(f"the download stopped: {exc}; the partial file was removed") from None
    bar.done()
    return written
