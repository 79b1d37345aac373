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


OPEN_DATABASE = (
    "import django; django.setup(); from django.db import connection;"
    "cursor = connection.cursor(); cursor.execute('create table t (x integer)'); cursor.execute('insert into t values (1)');"
    "print(connection.settings_dict['NAME'])"
)


def test_the_data_directory_and_the_database_file_are_created_private(tmp_path):
    data_dir = tmp_path / "fresh" / "data"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SESAM_SQLITE_PATH")}
    env.update(DJANGO_SETTINGS_MODULE="sesamweb.settings", SESAM_DATA_DIR=str(data_dir))
    database = subprocess.run([sys.executable, "-c", OPEN_DATABASE], cwd=REPO, env=env, capture_output=True,
                              text=True, check=True).stdout.strip().splitlines()[-1]
    assert Path(database).parent == data_dir
    assert data_dir.stat().st_mode & 0o777 == 0o700
    files = [Path(database)] + [Path(database + suffix) for suffix in ("-wal", "-shm") if Path(database + suffix).exists()]
    assert {str(f): f.stat().st_mode & 0o777 for f in files} == {str(f): 0o600 for f in files}
    for secret in ("django-secret.key", "sesam-secret.key"):
        assert (data_dir / secret).stat().st_mode & 0o777 == 0o600


PRINT_TLS_SETTINGS = (
    "import json, django; from django.conf import settings; django.setup();"
    "print(json.dumps({'proxy_header': settings.SECURE_PROXY_SSL_HEADER, 'hsts': settings.SECURE_HSTS_SECONDS,"
    "'cookies': [settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE]}))"
)


def tls_settings(tmp_path, **env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SESAM_")}
    clean.update(DJANGO_SETTINGS_MODULE="sesamweb.settings", SESAM_DATA_DIR=str(tmp_path), **env)
    output = subprocess.run([sys.executable, "-c", PRINT_TLS_SETTINGS], cwd=REPO, env=clean, capture_output=True,
                            text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def test_x_forwarded_proto_is_believed_only_with_a_trusted_proxy(tmp_path):
    assert tls_settings(tmp_path)["proxy_header"] is None
    found = tls_settings(tmp_path, SESAM_TRUSTED_PROXIES="10.0.0.1, 10.0.1.0/24")
    assert found["proxy_header"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_hsts_is_on_by_default_and_cookies_can_be_forced_secure(tmp_path):
    assert tls_settings(tmp_path)["hsts"] >= 180 * 24 * 3600
    assert tls_settings(tmp_path, SESAM_HSTS_SECONDS="0")["hsts"] == 0
    assert tls_settings(tmp_path, SESAM_SECURE_COOKIES="1")["cookies"] == [True, True]
