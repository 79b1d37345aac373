"""Topic names, their channel-layer groups and who may subscribe to them."""
import re

from sesamweb.accounts.roles import VIEW

TOPIC_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,40}(:[A-Za-z0-9_-]{1,50})?$")
_capabilities: dict[str, str] = {}


def register_topic(prefix: str, capability: str) -> None:
    """Require `capability` to subscribe to `prefix` and to every `prefix:<id>` topic."""
    _capabilities[prefix] = capability


def topic_capability(topic: str) -> str:
    prefix = topic.split(":", 1)[0]
    return _capabilities.get(topic) or _capabilities.get(prefix) or VIEW


def is_valid_topic(topic) -> bool:
    return isinstance(topic, str) and bool(TOPIC_PATTERN.match(topic))


def group_name(topic: str) -> str:
    """Channel-layer group for a topic ("pool:3" -> "live.pool.3"; groups allow no colon)."""
    return "live." + topic.replace(":", ".")
