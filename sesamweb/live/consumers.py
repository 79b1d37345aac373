"""The `ws/live/` websocket: authenticated, per-topic authorised subscriptions.

Client -> server: {"subscribe": ["vms", "pool:3"]} and {"unsubscribe": [...]}.
Server -> client: {"subscribed": [...]} acknowledgements, {"error": ..., "topic": ...} for a
refused topic, and {"topic": ..., "event": {...}} for each event.
Close codes: 4401 not signed in, 4403 signed in without a role.
"""
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from sesamweb.accounts.roles import user_can, user_role

from .publish import uses_shared_layer
from .relay import relay_for_this_loop
from .topics import group_name, is_valid_topic, topic_capability

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
MAX_TOPICS = 50


class LiveConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        self.topics = set()
        self.relay = None
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

    async def receive_json(self, content, **kwargs):
        if not isinstance(content, dict):
            await self.send_json({"error": "Expected a JSON object."})
            return
        user = self.scope["user"]
        accepted = []
        for topic in _topic_list(content.get("subscribe")):
            if not is_valid_topic(topic):
                await self.send_json({"error": "Unknown topic.", "topic": str(topic)[:100]})
            elif len(self.topics) >= MAX_TOPICS:
                await self.send_json({"error": f"At most {MAX_TOPICS} topics per connection.", "topic": topic})
            elif not await database_sync_to_async(user_can)(user, topic_capability(topic)):
                await self.send_json({"error": "You are not allowed to follow this topic.", "topic": topic})
            else:
                await self.channel_layer.group_add(group_name(topic), self.channel_name)
                self.topics.add(topic)
                accepted.append(topic)
        for topic in _topic_list(content.get("unsubscribe")):
            if topic in self.topics:
                await self.channel_layer.group_discard(group_name(topic), self.channel_name)
                self.topics.discard(topic)
        if accepted:
            await self.send_json({"subscribed": accepted})

    async def live_event(self, message):
        await self.send_json({"topic": message["topic"], "event": message["event"]})


def _topic_list(value):
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)[:MAX_TOPICS] if isinstance(value, (list, tuple)) else []
