from django.db import models


class LiveEvent(models.Model):
    """One published event on its way to browsers, in the embedded (no Redis) setup.

    Any process inserts rows through live.publish; the relay inside each web process reads
    them and hands them to its in-memory channel layer. Rows older than a few minutes are
    pruned: they are notifications, not history.
    """

    topic = models.CharField(max_length=100)
    payload = models.JSONField()
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"{self.topic}: {self.payload.get('type', '?') if isinstance(self.payload, dict) else '?'}"
