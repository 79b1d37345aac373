"""Progress of a running restore: the row, the live topics and the cancel flag, throttled."""
import threading
import time

from django.db import close_old_connections
from django.utils import timezone

from sesamweb.live.publish import publish

from ..models_restore import RestoreRun

PUBLISH_INTERVAL = 0.5      # seconds between live updates
CANCEL_CHECK_INTERVAL = 0.5
HEARTBEAT_INTERVAL = 10.0


class RestoreCancelled(Exception):
    """An operator cancelled the restore."""


class RestoreProgress:
    def __init__(self, run: RestoreRun):
        self.run = run
        self.lock = threading.Lock()
        self.last_publish = 0.0
        self.last_cancel_check = 0.0
        self.rate_window = []
        self._stop = threading.Event()
        self._heartbeat = None

    def phase(self, phase, message=""):
        self.run.phase = phase
        RestoreRun.objects.filter(pk=self.run.pk).update(phase=phase, lease_heartbeat=timezone.now())
        self.publish({"type": "restore.phase", "phase": phase, "message": message})

    def warn(self, text):
        self.run.warnings.append(text)
        RestoreRun.objects.filter(pk=self.run.pk).update(warnings=self.run.warnings)
        self.publish({"type": "restore.warning", "message": text})

    def set_total(self, total):
        self.run.bytes_total = total
        RestoreRun.objects.filter(pk=self.run.pk).update(bytes_total=total)

    def advance(self, bytes_done):
        """Disk bytes restored so far (zeros the stream skips count as restored)."""
        now = time.monotonic()
        with self.lock:
            self.run.bytes_done = bytes_done
        # One rate sample per publish, not per call: a sparse 2 TiB disk makes two million
        # calls, and a window of every call made this quadratic.
        if now - self.last_publish >= PUBLISH_INTERVAL:
            with self.lock:
                self.rate_window = [(t, b) for t, b in self.rate_window if now - t < 5.0] + [(now, bytes_done)]
            self.flush(now)

    def flush(self, now=None):
        now = now or time.monotonic()
        with self.lock:
            first_t, first_b = self.rate_window[0] if self.rate_window else (now, self.run.bytes_done)
            self.run.rate = (self.run.bytes_done - first_b) / (now - first_t) if now > first_t else self.run.rate
        RestoreRun.objects.filter(pk=self.run.pk).update(
            bytes_done=self.run.bytes_done, rate=self.run.rate, lease_heartbeat=timezone.now())
        self.publish({"type": "restore.progress", "bytes_done": self.run.bytes_done,
                      "bytes_total": self.run.bytes_total, "rate": self.run.rate, "progress": self.run.progress})

    def publish(self, event):
        self.last_publish = time.monotonic()
        run = self.run
        event = {"restore": run.pk, "vm_name": run.source_vm_name, "phase": run.phase, **event}
        publish(run.topic, event)
        publish("runs", event)
        if event["type"] == "restore.finished":
            publish("dashboard", event)

    def check_cancelled(self, force=False):
        now = time.monotonic()
        if not force and now - self.last_cancel_check < CANCEL_CHECK_INTERVAL:
            return
        self.last_cancel_check = now
        if RestoreRun.objects.filter(pk=self.run.pk, cancel_requested=True).exists():
            raise RestoreCancelled("cancelled by an operator")

    def start_heartbeat(self):
        def beat():
            while not self._stop.wait(HEARTBEAT_INTERVAL):
                RestoreRun.objects.filter(pk=self.run.pk).update(lease_heartbeat=timezone.now())
                close_old_connections()
        self._heartbeat = threading.Thread(target=beat, name=f"restore-heartbeat-{self.run.pk}", daemon=True)
        self._heartbeat.start()

    def stop_heartbeat(self):
        self._stop.set()
        if self._heartbeat:
            self._heartbeat.join(timeout=5)
