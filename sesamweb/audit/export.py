"""CSV export of the audit log, streamed row by row (the log can be large)."""
import csv
import json

from django.http import StreamingHttpResponse
from django.utils import timezone

COLUMNS = ["sequence", "time", "user", "source", "action", "outcome", "target_type", "target_id", "target",
           "message", "before", "after", "prev_hash", "hash"]


class _Echo:
    def write(self, value):
        return value


def _cell(value):
    # Spreadsheets execute cells starting with these; a leading quote keeps them text.
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _rows(events):
    yield COLUMNS
    for event in events.iterator(chunk_size=2000):
        yield [_cell(v) for v in (
            event.sequence, event.created.isoformat(), event.actor_username, event.source, event.action,
            event.outcome, event.target_type, event.target_id, event.target_repr, event.message,
            json.dumps(event.before, sort_keys=True) if event.before is not None else "",
            json.dumps(event.after, sort_keys=True) if event.after is not None else "",
            event.prev_hash, event.hash,
        )]


def audit_csv_response(events) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse((writer.writerow(row) for row in _rows(events.order_by("sequence"))),
                                     content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="sesamweb-audit-{stamp}.csv"'
    return response
