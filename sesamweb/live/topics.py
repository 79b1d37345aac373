"""Topic names, their channel-layer groups and who may subscribe to them.

Only registered topics can be followed: "runs" (plain) or "run:<id>" (keyed by a database id),
each with the capability a subscriber needs. Apps register theirs when they load (apps.py)."""
import re
from dataclasses import dataclass

from sesamweb.identifiers import parse_id

TOPIC_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,40}(:[A-Za-z0-9_-]{1,50})?$")


@dataclass(frozen=True)
class TopicKind:
    capability: str
    keyed: bool


_registry: dict[str, TopicKind] = {}


def register_topic(prefix: str, capability: str, *, keyed: bool = False) -> None:
    """Let users with `capability` follow `prefix` (keyed=False) or `prefix:<id>` (keyed=True)."""
    _registry[prefix] = TopicKind(capability, keyed)


def _kind(topic) -> TopicKind | None:
    if not is_valid_topic(topic):
        return None
    prefix, _, key = topic.partition(":")
    kind = _registry.get(prefix)
    if kind is None or kind.keyed != bool(key) or (key and parse_id(key) is None):
        return None
    return kind


def is_known_topic(topic) -> bool:
    return _kind(topic) is not None


def topic_capability(topic: str) -> str | None:
    """The capability a subscriber needs, None for an unknown topic."""
    kind = _kind(topic)
    return kind.capability if kind else None


def is_valid_topic(topic) -> bool:
    """Well-formed (publishers check this; subscribers need a known topic too)."""
    return isinstance(topic, str) and bool(TOPIC_PATTERN.match(topic))


def group_name(topic: str) -> str:
    """Channel-layer group for a topic ("pool:3" -> "live.pool.3"; groups allow no colon)."""
    return "live." + topic.replace(":", ".")
