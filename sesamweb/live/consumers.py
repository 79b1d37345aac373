"""The `ws/live/` websocket: authenticated, per-topic authorised subscriptions.

Client -> server: {"subscribe": ["vms", "pool:3"]} and {"unsubscribe": [...]}.
Server -> client: {"subscribed": [...]} acknowledgements, {"error": ..., "topic": ...} for a
refused topic (unknown, or not allowed to this user's role), {"error": ...} for a frame that is
not such an object (not JSON, binary, too large, wrong types), and {"topic": ..., "event": {...}}
for each event. No frame ends the connection.
Close codes: 4401 not signed in, 4403 signed in without a role.

The user is checked again before events are delivered, at most every RECHECK_SECONDS: a
socket whose session ended (signed out, password changed, account deactivated) is closed
with 4401, one whose user lost every role with 4403, and topics the user's role no longer
allows are dropped with an error. Nothing is sent to a socket between its user losing access
and that check but events already allowed a moment earlier.
"""
import json
import logging
import time
from importlib import import_module
from types import SimpleNamespace

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user

from sesamweb.accounts.roles import user_can, user_role

from .publish import uses_shared_layer
from .relay import relay_for_this_loop
from .topics import group_name, is_known_topic, topic_capability

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
MAX_TOPICS = 50
MAX_FRAME_CHARS = 16 * 1024  # 50 topics of the longest form fit in a tenth of that
RECHECK_SECONDS = 30


class LiveConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        self.topics = set()
        self.relay = None
        self.recheck_at = time.monotonic() + RECHECK_SECONDS
        user = self.scope.get("user")
        # Accept first: a close before accept reaches the browser as a bare HTTP 403 without
        # the code, and the page could not tell "sign in again" from "no access".
        await self.accept()
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if await database_sync_to_async(user_role)(user) is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        if not uses_shared_layer(self.channel_layer):
            self.relay = relay_for_this_loop()
            await self.relay.attach()

    async def disconnect(self, code):
        for topic in list(self.topics):
            await self.channel_layer.group_discard(group_name(topic), self.channel_name)
        self.topics.clear()
        if self.relay is not None:
            self.relay.detach()
            self.relay = None

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        """Every frame is answered; a malformed one with an error, never an exception."""
        if text_data is None:
            await self.send_json({"error": "Expected a text frame holding a JSON object."})
            return
        if len(text_data) > MAX_FRAME_CHARS:
            await self.send_json({"error": f"Frame too large (at most {MAX_FRAME_CHARS} characters)."})
            return
        try:
            content = json.loads(text_data)
        except (ValueError, RecursionError):
            await self.send_json({"error": "Expected a JSON object."})
            return
        try:
            await self.receive_json(content)
        except Exception:
            logger.exception("live socket: could not handle a frame")
            await self.send_json({"error": "Could not handle that message."})

    async def receive_json(self, content, **kwargs):
        if not isinstance(content, dict):
            await self.send_json({"error": "Expected a JSON object."})
            return
        if "subscribe" not in content and "unsubscribe" not in content:
            await self.send_json({"error": 'Expected "subscribe" or "unsubscribe".'})
            return
        subscribe, unsubscribe = _topic_list(content.get("subscribe")), _topic_list(content.get("unsubscribe"))
        if subscribe is None or unsubscribe is None:
            await self.send_json({"error": '"subscribe" and "unsubscribe" take a topic name or a list of them.'})
            return
        user = self.scope["user"]
        accepted = []
        for topic in subscribe:
            if not is_known_topic(topic):
                await self.send_json({"error": "Unknown topic.", "topic": topic[:100]})
            elif len(self.topics) >= MAX_TOPICS:
                await self.send_json({"error": f"At most {MAX_TOPICS} topics per connection.", "topic": topic})
            elif not await database_sync_to_async(user_can)(user, topic_capability(topic)):
                await self.send_json({"error": "You are not allowed to follow this topic.", "topic": topic})
            else:
                await self.channel_layer.group_add(group_name(topic), self.channel_name)
                self.topics.add(topic)
                accepted.append(topic)
        for topic in unsubscribe:
            if topic in self.topics:
                await self.channel_layer.group_discard(group_name(topic), self.channel_name)
                self.topics.discard(topic)
        if accepted:
            await self.send_json({"subscribed": accepted})

    async def live_event(self, message):
        if time.monotonic() >= self.recheck_at and not await self._still_allowed():
            return
        if message["topic"] in self.topics:
            await self.send_json({"topic": message["topic"], "event": message["event"]})

    async def _still_allowed(self):
        """Check the user again; close the socket or drop topics they may no longer follow."""
        self.recheck_at = time.monotonic() + RECHECK_SECONDS
        user, allowed = await database_sync_to_async(self._current_access)()
        if user is None:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return False
        if allowed is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return False
        for topic in sorted(self.topics - allowed):
            await self.channel_layer.group_discard(group_name(topic), self.channel_name)
            self.topics.discard(topic)
            await self.send_json({"error": "You are no longer allowed to follow this topic.", "topic": topic})
        return True

    def _current_access(self):
        """(user as the session now says or None when signed out, topics of this socket they
        may follow or None without a role). Reads the session afresh: Django's own checks
        then apply (session ended, password changed, user inactive)."""
        session = self.scope.get("session")
        key = session.session_key if session is not None else None
        store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=key)
        user = get_user(SimpleNamespace(session=store))
        if not user.is_authenticated or user.pk != self.scope["user"].pk:
            return None, None
        if user_role(user) is None:
            return user, None
        return user, {topic for topic in self.topics if user_can(user, topic_capability(topic))}


def _topic_list(value):
    """The topic names of a "subscribe" / "unsubscribe" value, None when it is not a name or
    a list of names."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(topic, str) for topic in value):
        return value[:MAX_TOPICS]
    return None
