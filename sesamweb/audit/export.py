"""CSV and JSON export of the (filtered) audit log, streamed: the rows are read with
.iterator(chunk_size=...) (a server-side cursor on PostgreSQL) and written as they come, so
a million events take the memory of one chunk, not of the log."""
import csv
import json

from django.core.serializers.json import DjangoJSONEncoder
from django.http import StreamingHttpResponse
from django.utils import timezone

from .objects import kind_label

CHUNK_SIZE = 2000
COLUMNS = ["sequence", "time", "user", "source", "action", "outcome", "target_type", "target_id", "target",
           "message", "before", "after", "prev_hash", "hash"]
FIELDS = ("sequence", "created", "actor_username", "source", "action", "outcome", "target_type", "target_id",
          "target_repr", "message", "before", "after", "prev_hash", "hash")


class _Echo:
    def write(self, value):
        return value


def _cell(value):
    # Spreadsheets execute cells starting with these; a leading quote keeps them text.
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _rows(events):
    """Plain tuples in chain order (no model instances: less memory and time per row)."""
    return events.order_by("sequence").values_list(*FIELDS).iterator(chunk_size=CHUNK_SIZE)


def _csv_lines(events):
    writer = csv.writer(_Echo())
    yield writer.writerow(COLUMNS)
    for (sequence, created, user, source, action, outcome, target_type, target_id, target, message, before, after,
         prev_hash, hash_) in _rows(events):
        yield writer.writerow([_cell(v) for v in (
            sequence, created.isoformat(), user, source, action, outcome, target_type, target_id, target, message,
            json.dumps(before, sort_keys=True) if before is not None else "",
            json.dumps(after, sort_keys=True) if after is not None else "",
            prev_hash, hash_,
        )])


def _json_lines(events):
    """A JSON array, one event per line (so it also reads well as it arrives)."""
    yield "[\n"
    separator = ""
    for (sequence, created, user, source, action, outcome, target_type, target_id, target, message, before, after,
         prev_hash, hash_) in _rows(events):
        record = {"sequence": sequence, "time": created.isoformat(), "user": user, "source": source,
                  "action": action, "outcome": outcome, "object_kind": kind_label(target_type) if target_type else "",
                  "target_type": target_type, "target_id": target_id, "target": target, "message": message,
                  "before": before, "after": after, "prev_hash": prev_hash, "hash": hash_}
        yield separator + json.dumps(record, cls=DjangoJSONEncoder, sort_keys=True, ensure_ascii=False)
        separator = ",\n"
    yield "\n]\n"


def _response(lines, content_type, extension) -> StreamingHttpResponse:
    response = StreamingHttpResponse(lines, content_type=content_type)
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="sesamweb-audit-{stamp}.{extension}"'
    return response


def audit_csv_response(events) -> StreamingHttpResponse:
    return _response(_csv_lines(events), "text/csv; charset=utf-8", "csv")


def audit_json_response(events) -> StreamingHttpResponse:
    return _response(_json_lines(events), "application/json; charset=utf-8", "json")


EXPORTS = {"csv": audit_csv_response, "json": audit_json_response}
