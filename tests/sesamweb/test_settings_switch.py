"""DATABASE_URL and REDIS_URL switch the embedded defaults to PostgreSQL, the Redis broker
and the Redis channel layer (settings are read in a fresh interpreter each time)."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRINT_SETTINGS = (
    "import json, django; from django.conf import settings; django.setup();"
    "print(json.dumps({'db': settings.DATABASES['default']['ENGINE'], 'name': settings.DATABASES['default']['NAME'],"
    "'layer': settings.CHANNEL_LAYERS['default']['BACKEND'], 'hosts': settings.CHANNEL_LAYERS['default'].get('CONFIG', {}).get('hosts'),"
    "'q_redis': settings.Q_CLUSTER.get('redis'), 'q_orm': settings.Q_CLUSTER.get('orm')}))"
)


def settings_with(tmp_path, **env):
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    clean.update(DJANGO_SETTINGS_MODULE="sesamweb.settings", SESAM_DATA_DIR=str(tmp_path), **env)
    output = subprocess.run([sys.executable, "-c", PRINT_SETTINGS], cwd=REPO, env=clean, capture_output=True,
                            text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def test_the_embedded_default_is_sqlite_the_orm_broker_and_the_in_memory_layer(tmp_path):
    found = settings_with(tmp_path)
    assert found["db"] == "django.db.backends.sqlite3" and found["name"].startswith(str(tmp_path))
    assert found["layer"] == "channels.layers.InMemoryChannelLayer"
    assert (found["q_orm"], found["q_redis"]) == ("default", None)


def test_urls_switch_to_postgresql_redis_broker_and_channels_redis(tmp_path):
    found = settings_with(tmp_path, DATABASE_URL="postgres://sesam@127.0.0.1:5432/sesam", REDIS_URL="redis://127.0.0.1:6379/3")
    assert (found["db"], found["name"]) == ("django.db.backends.postgresql", "sesam")
    assert found["layer"] == "channels_redis.core.RedisChannelLayer"
    assert found["hosts"] == ["redis://127.0.0.1:6379/3"]
    assert (found["q_redis"], found["q_orm"]) == ("redis://127.0.0.1:6379/3", None)
