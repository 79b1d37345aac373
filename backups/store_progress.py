"""Live progress of a data store's verify or garbage collection: the store page follows
"store:<id>" (sesamweb/live) and shows what runs, how far it is and how it ended."""
import time

from sesamweb.live.publish import publish

PUBLISH_INTERVAL = 0.5      # seconds between progress events


class StoreTaskProgress:
    """with StoreTaskProgress(store, "verify") as progress: ... progress.update(done, total, text);
    return progress.done(result). An exception publishes the failure and goes on."""

    LABELS = {"verify": "Verify", "gc": "Garbage collection"}

    def __init__(self, store, action, clock=time.monotonic):
        self.topic = f"store:{store.pk}"
        self.action = action
        self.clock = clock
        self.last = None

    def _publish(self, state, **fields):
        publish(self.topic, {"type": "store.task", "action": self.action, "label": self.LABELS[self.action],
                             "state": state, **fields})

    def __enter__(self):
        self._publish("running", text="started")
        return self

    def update(self, done, total, text):
        now = self.clock()
        if self.last is not None and now - self.last < PUBLISH_INTERVAL:
            return
        self.last = now
        self._publish("running", done=done, total=total, text=text)

    def done(self, result):
        self._publish("finished", text=result)
        return result

    def __exit__(self, kind, exc, traceback):
        if exc is not None:
            self._publish("failed", text=f"failed: {exc}")
        return False
