"""Signed checkpoints of the audit chain's head, kept outside the database.

A checkpoint is (last id, last sequence, last hash, count, time) with an HMAC under a key
that is not in the database (keys.py). Written after every SESAM_AUDIT_CHECKPOINT_EVERY
events, or by the first event once the last one is older than SESAM_AUDIT_CHECKPOINT_MINUTES
(and by `manage.py audit_checkpoint`), to every registered writer: a file in the data
directory and a syslog message (this app), a file in each local data store (backups app).
Deleting the newest rows leaves a shorter chain that is valid on its own; the checkpoint is
what shows it was longer (chain.verify_chain reports it as truncated).

Other apps add witnesses without this package knowing them:

    register_checkpoint_writer(my_writer)   # in AppConfig.ready; my_writer(checkpoint)
"""
import hashlib
import hmac
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import Callable

from django.conf import settings
from django.utils import timezone

from .keys import checkpoint_key
from .models import AuditEvent

logger = logging.getLogger(__name__)
FILENAME = "audit-checkpoint.json"
FORMAT = "sesamweb-audit-checkpoint/1"


@dataclass(frozen=True)
class Checkpoint:
    last_id: int
    last_sequence: int
    last_hash: str
    count: int
    time: str  # ISO 8601, UTC
    mac: str = ""

    def _payload(self) -> bytes:
        fields = asdict(self)
        fields.pop("mac")
        return json.dumps({"format": FORMAT, **fields}, sort_keys=True, separators=(",", ":")).encode()

    def signed(self) -> "Checkpoint":
        return replace(self, mac=hmac.new(checkpoint_key(), self._payload(), hashlib.sha256).hexdigest())

    def is_authentic(self) -> bool:
        expected = hmac.new(checkpoint_key(), self._payload(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.mac)

    @property
    def created(self) -> datetime:
        return datetime.fromisoformat(self.time)

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Checkpoint":
        """Raises ValueError when the text is not a checkpoint (its MAC is checked separately)."""
        try:
            data = json.loads(text)
            if data.pop("format") != FORMAT:
                raise ValueError("unknown checkpoint format")
            checkpoint = cls(**data)
            checkpoint.created  # noqa: B018 - a time that does not parse is not a checkpoint
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as error:
            raise ValueError(f"not an audit checkpoint: {error}") from None
        return checkpoint

    def __str__(self):
        return f"checkpoint of {self.time} ({self.count} events up to #{self.last_sequence}, id {self.last_id})"


# --- writers ---------------------------------------------------------------------------------
_writers: list[Callable[[Checkpoint], None]] = []


def register_checkpoint_writer(writer: Callable[[Checkpoint], None]) -> None:
    if writer not in _writers:
        _writers.append(writer)


def checkpoint_writers() -> tuple:
    return tuple(_writers)


def current_checkpoint() -> Checkpoint | None:
    """The chain's head now, signed; None while the log is empty."""
    head = AuditEvent.objects.order_by("-sequence").values("id", "sequence", "hash").first()
    if head is None:
        return None
    return Checkpoint(
        last_id=head["id"], last_sequence=head["sequence"], last_hash=head["hash"],
        count=AuditEvent.objects.filter(sequence__lte=head["sequence"]).count(),
        time=timezone.now().astimezone(dt_timezone.utc).isoformat(timespec="seconds"),
    ).signed()


def write_checkpoint() -> Checkpoint | None:
    """Sign the chain's head and hand it to every writer; a witness that fails is logged,
    never raised: recording the event that triggered it has already succeeded."""
    checkpoint = current_checkpoint()
    if checkpoint is None:
        return None
    for writer in _writers:
        try:
            writer(checkpoint)
        except Exception:
            logger.exception("Could not write the audit checkpoint with %s", getattr(writer, "__name__", writer))
    return checkpoint


def checkpoint_due(event) -> bool:
    every = settings.SESAM_AUDIT_CHECKPOINT_EVERY
    if every > 0 and event.sequence % every == 0:
        return True
    try:
        latest = read_checkpoint(data_directory_path())
    except ValueError:
        latest = None
    if latest is None:
        return True
    return timezone.now() - latest.created >= timedelta(minutes=settings.SESAM_AUDIT_CHECKPOINT_MINUTES)


def after_event_committed(event) -> None:
    if checkpoint_due(event):
        write_checkpoint()


# --- files -----------------------------------------------------------------------------------
def data_directory_path() -> Path:
    return Path(settings.SESAM_AUDIT_CHECKPOINT_DIR) / FILENAME


def read_checkpoint(path) -> Checkpoint | None:
    """The checkpoint stored at `path`, None if there is none; ValueError if it is garbage."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    return Checkpoint.from_json(text)


def may_replace(existing: Checkpoint | None, new: Checkpoint) -> bool:
    """A checkpoint is only replaced by a newer one of the same chain: one that the database
    no longer matches is evidence and stays until an administrator has looked at it."""
    if existing is None or not existing.is_authentic():
        return True
    if existing.last_sequence > new.last_sequence:
        return False
    return AuditEvent.objects.filter(sequence=existing.last_sequence, hash=existing.last_hash).exists()


def write_checkpoint_file(path, checkpoint: Checkpoint) -> bool:
    """Write atomically (a reader never sees half a file); False when `may_replace` refuses."""
    path = Path(path)
    try:
        existing = read_checkpoint(path)
    except ValueError:
        existing = None
    if not may_replace(existing, checkpoint):
        logger.error("Kept the audit checkpoint %s (%s): the audit log no longer matches it", path, existing)
        return False
    fd, tmp = tempfile.mkstemp(prefix=".audit-checkpoint-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(checkpoint.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def write_to_data_directory(checkpoint: Checkpoint) -> None:
    write_checkpoint_file(data_directory_path(), checkpoint)


def send_to_syslog(checkpoint: Checkpoint) -> None:
    from .syslog import forward_checkpoint

    forward_checkpoint(checkpoint)
