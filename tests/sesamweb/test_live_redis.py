"""The live path over the Redis channel layer (integration tier: REDIS_URL set)."""
import os
import threading

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connection

from sesamweb.live.models import LiveEvent
from sesamweb.live.publish import publish, uses_shared_layer
from tests.sesamweb.test_live import live_socket, socket_headers

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _redis_configured():
    if not os.environ.get("REDIS_URL"):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("REDIS_URL is not set (required when CI=true)")
        pytest.skip("REDIS_URL is not set: run with make test-integration")


def test_with_redis_events_go_through_the_channel_layer_not_the_database(operator_user):
    assert uses_shared_layer()
    headers = socket_headers(operator_user)

    def publish_elsewhere():
        def run():
            try:
                publish("run:5", {"type": "progress", "bytes": 1024})
            finally:
                connection.close()
        thread = threading.Thread(target=run)
        thread.start()
        thread.join()

    async def scenario():
        ws = live_socket(headers)
        assert (await ws.connect())[0]
        await ws.send_json_to({"subscribe": ["run:5"]})
        assert await ws.receive_json_from(timeout=5) == {"subscribed": ["run:5"]}
        await sync_to_async(publish_elsewhere, thread_sensitive=False)()
        assert await ws.receive_json_from(timeout=10) == {"topic": "run:5", "event": {"type": "progress", "bytes": 1024}}
        await ws.disconnect()

    async_to_sync(scenario)()
    assert not LiveEvent.objects.exists()
