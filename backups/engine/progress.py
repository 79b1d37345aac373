"""Progress of a running VM backup: the row, the websocket and the cancel flag, throttled.

The repository calls on_progress from its pipeline threads at most a few times a second; the
reporter writes the numbers to the VmBackup row (which is also the lease heartbeat), publishes
them to the run's live topic, and raises BackupCancelled when an operator asked to cancel.
"""
import threading
import time

from django.db import close_old_connections
from django.utils import timezone

from sesamweb.live.publish import publish

from ..models import VmBackup

PUBLISH_INTERVAL = 0.5     # seconds between live updates
HEARTBEAT_INTERVAL = 10.0  # seconds between lease refreshes while nothing else is written


class BackupCancelled(Exception):
    """An operator cancelled the backup."""


class ProgressReporter:
    def __init__(self, vm_backup: VmBackup):
        self.vm_backup = vm_backup
        self.lock = threading.Lock()
        self.last_publish = 0.0
        self.rate_window = []   # (monotonic time, bytes_processed) for the MB/s figure
        self.base = {"read": 0, "new": 0, "stored": 0}
        self._stop = threading.Event()
        self._heartbeat = None

    # -- phases ------------------------------------------------------------------------------
    def phase(self, phase, message=None):
        fields = {"phase": phase, "lease_heartbeat": timezone.now()}
        VmBackup.objects.filter(pk=self.vm_backup.pk).update(**fields)
        self.vm_backup.phase = phase
        self._publish({"type": "vm_backup.phase", "phase": phase, "message": message or ""}, force=True)

    def warn(self, text):
        self.vm_backup.warnings.append(text)
        VmBackup.objects.filter(pk=self.vm_backup.pk).update(warnings=self.vm_backup.warnings)
        self._publish({"type": "vm_backup.warning", "message": text}, force=True)

    # -- numbers -------------------------------------------------------------------------------
    def set_total(self, total_bytes):
        self.vm_backup.total_bytes = total_bytes
        VmBackup.objects.filter(pk=self.vm_backup.pk).update(total_bytes=total_bytes)

    def bytes_read(self, count, covered):
        """`count` bytes received from the pool so far; `covered` disk bytes dealt with
        (zero regions an export skips count as covered)."""
        with self.lock:
            self.vm_backup.bytes_read = self.base["read"] + count
            self.vm_backup.bytes_processed = covered

    def start_attempt(self):
        """A new transfer after a broken one: later pipeline numbers add to what is stored."""
        with self.lock:
            vb = self.vm_backup
            self.base = {"read": vb.bytes_read, "new": vb.bytes_new, "stored": vb.bytes_stored}
            vb.bytes_processed = 0

    def on_repository_progress(self, _written, new, stored):
        """Repository callback (pipeline threads): bytes new and stored so far."""
        with self.lock:
            vb = self.vm_backup
            vb.bytes_new = self.base["new"] + new
            vb.bytes_stored = self.base["stored"] + stored
        self.flush()
        self.check_cancelled()

    def flush(self, force=False):
        now = time.monotonic()
        if not force and now - self.last_publish < PUBLISH_INTERVAL:
            return
        with self.lock:
            vb = self.vm_backup
            numbers = {
                "bytes_read": vb.bytes_read, "bytes_processed": vb.bytes_processed,
                "bytes_new": vb.bytes_new, "bytes_stored": vb.bytes_stored,
            }
            self.rate_window = [(t, b) for t, b in self.rate_window if now - t < 5.0] + [(now, vb.bytes_processed)]
            first_t, first_b = self.rate_window[0]
            rate = (vb.bytes_processed - first_b) / (now - first_t) if now > first_t else 0.0
        try:
            VmBackup.objects.filter(pk=vb.pk).update(lease_heartbeat=timezone.now(), **numbers)
        finally:
            close_old_connections_if_thread()
        self._publish({"type": "vm_backup.progress", "rate": rate, "total_bytes": vb.total_bytes,
                       "progress": vb.progress, **numbers}, force=True, now=now)

    def _publish(self, event, force=False, now=None):
        now = now or time.monotonic()
        if not force and now - self.last_publish < PUBLISH_INTERVAL:
            return
        self.last_publish = now
        vb = self.vm_backup
        event = {"vm_backup": vb.pk, "run": vb.run_id, "vm_uuid": vb.vm_uuid, "vm_name": vb.vm_name,
                 "phase": vb.phase, **event}
        publish(f"run:{vb.run_id}", event)
        publish("runs", event)

    # -- cancel and heartbeat ------------------------------------------------------------------
    def check_cancelled(self):
        if VmBackup.objects.filter(pk=self.vm_backup.pk, cancel_requested=True).exists():
            raise BackupCancelled("cancelled by an operator")

    def start_heartbeat(self):
        """Keep the lease fresh during long quiet phases (a shutdown, a snapshot)."""
        def beat():
            while not self._stop.wait(HEARTBEAT_INTERVAL):
                VmBackup.objects.filter(pk=self.vm_backup.pk).update(lease_heartbeat=timezone.now())
                close_old_connections_if_thread()
        self._heartbeat = threading.Thread(target=beat, name=f"heartbeat-{self.vm_backup.pk}", daemon=True)
        self._heartbeat.start()

    def stop_heartbeat(self):
        self._stop.set()
        if self._heartbeat:
            self._heartbeat.join(timeout=5)


def close_old_connections_if_thread():
    """Pipeline and heartbeat threads each open a database connection; close it when idle."""
    if threading.current_thread() is not threading.main_thread():
        close_old_connections()
