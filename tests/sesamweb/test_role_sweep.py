"""The role sweep: every URL of the URL map (pages and API, found by walking the resolver, so
pages added later are covered without anyone listing them) and every websocket topic, as
anonymous, signed in without a role, auditor, operator and administrator.

Fails on any 5xx, on any database write that succeeded (2xx/3xx) for an identity that may not
write, and on any secret in a response. Each request runs in a savepoint that is rolled back,
so a DELETE by the administrator does not take the rows the next URLs need."""
import re
from collections import Counter

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from backups.models import (
    BackupJob, BackupRun, DataStore, JobSchedule, ReplicationPolicy, RestorePoint, RestoreRun, StoreMaintenanceSchedule,
    VmBackup,
)
from sesamweb.accounts.models import ApiToken
from sesamweb.accounts.roles import CAPABILITIES, Role
from sesamweb.live import topics as live_topics
from tests.fixtures.summary import report
from tests.fixtures.urlmap import url_patterns, view_model
from tests.fixtures.users import make_user
from xenpools.models import VM, Pool

IDENTITIES = ["anonymous", "norole", "auditor", "operator", "administrator"]
# Identities that may not change anything (operators may run backups and restores).
READ_ONLY = {"anonymous", "norole", "auditor"}
WRITE_METHODS = ("post", "put", "patch", "delete")

# Writes that succeed for a read-only identity on purpose: (URL name, method or "*", identity or "*").
ALLOWED_WRITES = {
    ("login", "*", "*"): "signing in counts failures and forgets expired ones (LoginFailure); PUT is POST there",
    ("audit:export", "get", "auditor"): "exporting the audit log is itself recorded in the audit log",
    ("audit:export_json", "get", "auditor"): "exporting the audit log is itself recorded in the audit log",
    ("logout", "post", "*"): "signing out ends one's own session",
    ("accounts:password_change", "post", "*"): "anyone signed in changes their own password (forced change)",
    ("accounts:token_revoke", "post", "*"): "anyone signed in revokes their own API tokens",
}
# Server errors that are the designed answer: (URL name, method, status).
ALLOWED_SERVER_ERRORS = {}
# Tables whose writes are not state changes: the session store (messages, sign-out).
IGNORED_TABLES = {"django_session"}

WRITE_SQL = re.compile(r'^\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+"?([A-Za-z0-9_]+)"?', re.IGNORECASE)


# --- the URL map ----------------------------------------------------------------------------

# "pk" is the first row of the view's model (its queryset, model or serializer); for views that
# name none, of the first model whose stem is in the URL name (order matters: "restore_run"
# before "run", "vm_backup" before "vm"). test_every_pk_parameter_points_at_a_row catches a miss.
def pk_models_by_name():
    from django.contrib.auth import get_user_model

    from sesamweb.audit.models import AuditEvent

    from sesamweb.notify.models import Channel, Delivery, Rule

    from backups.models import DeviceServer, RegistrationToken

    return [("device_token", RegistrationToken), ("device-registration-token", RegistrationToken),
            ("device_server", DeviceServer), ("device-server", DeviceServer), ("token", ApiToken), ("user", get_user_model()), ("event", AuditEvent), ("restore_run", RestoreRun),
            ("restore-point", RestorePoint), ("point", RestorePoint), ("vm_backup", VmBackup), ("vm-backup", VmBackup),
            # a job's pages and a store's maintenance pages take the owner's pk
            ("job", BackupJob), ("maintenance", DataStore), ("replication", ReplicationPolicy),
            ("channel", Channel), ("rule", Rule), ("deliver", Delivery),
            ("run", BackupRun), ("store", DataStore), ("pool", Pool), ("vm", VM), ("schedule", JobSchedule)]


# Second keys (<schedule_pk>) by URL name: the owner's pk comes from pk_for, the row's from here.
SECOND_PK_MODELS = {"maintenance": StoreMaintenanceSchedule, "job_schedule": JobSchedule}


def second_pk_for(name):
    model = next((m for stem, m in SECOND_PK_MODELS.items() if stem in name.split(":")[-1]), None)
    row = model.objects.order_by("pk").first() if model is not None else None
    return row.pk if row is not None else 1


def pk_for(name, callback):
    short = name.split(":")[-1]
    model = view_model(callback) or next((m for stem, m in pk_models_by_name() if stem in short), None)
    row = model.objects.order_by("pk").first() if model is not None else None
    return row.pk if row is not None else 1


def parameter_values(name, pattern, world):
    """A list of kwargs for reverse(): one, or one per value of a slug that names an action."""
    groups = list(pattern.pattern.regex.groupindex)
    base = {}
    for group in groups:
        if group == "pk":
            base[group] = pk_for(name, pattern.callback)
        elif group == "vm_pk":
            base[group] = world["vm"].pk
        elif group == "format":
            base[group] = "json"
        elif group == "key":
            base[group] = "0"
        elif group == "schedule_pk":
            base[group] = second_pk_for(name)
        elif group != "action":
            base[group] = 1
    if "action" in groups:
        from backups.tasks import STORE_TASKS

        if name.endswith("point_protect"):
            return [{**base, "action": action} for action in ("protect", "unprotect")]
        return [{**base, "action": action} for action in [*STORE_TASKS, "no-such-action"]]
    return [base]


def accepted_methods(callback):
    actions = getattr(callback, "actions", None)
    if actions:
        return [m for m in ("get", *WRITE_METHODS) if m in actions]
    view = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    if view is None:
        return ["get", *WRITE_METHODS]
    return [m for m in ("get", *WRITE_METHODS) if hasattr(view, m)]


def sweep_targets(world):
    targets, unnamed = {}, []
    for name, pattern in url_patterns():
        if not name:
            unnamed.append(str(pattern.pattern))
            continue
        for kwargs in parameter_values(name, pattern, world):
            path = reverse(name, kwargs=kwargs)
            targets.setdefault(path, (name, accepted_methods(pattern.callback)))
    assert not unnamed, f"URL patterns without a name cannot be swept: {unnamed}"
    return targets


# --- the clients ---------------------------------------------------------------------------

class Identity:
    def __init__(self, name, user, token):
        self.name = name
        self.page = Client()
        self.api = APIClient()
        if user is not None:
            self.page.force_login(user)
            self.api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        self.cookies = self.page.cookies.copy()

    def send(self, method, path):
        self.page.cookies = self.cookies.copy()  # signing out must not sign out the rest of the sweep
        if path.startswith("/api/"):
            return getattr(self.api, method)(path, {} if method != "get" else None, format="json" if method != "get" else None)
        return getattr(self.page, method)(path)


def body_of(response, limit=4 << 20):
    if getattr(response, "streaming", False):
        data = b""
        for block in response.streaming_content:
            data += block
            if len(data) > limit:
                break
        return data
    return response.content


class WriteRecorder:
    """Every INSERT / UPDATE / DELETE this connection sends, by table."""

    def __init__(self):
        self.writes = []

    def __call__(self, execute, sql, params, many, context):
        match = WRITE_SQL.match(sql)
        if match and match.group(2) not in IGNORED_TABLES:
            self.writes.append(f"{match.group(1).split()[0].upper()} {match.group(2)}")
        return execute(sql, params, many, context)


def allowed_write(name, method, identity):
    return any((name, m, i) in ALLOWED_WRITES for m in (method, "*") for i in (identity, "*"))


class Rollback(Exception):
    pass


def test_every_url_as_every_identity_holds_its_roles(world):
    identities = [Identity(name, world["users"].get(name), world["tokens"].get(name)) for name in IDENTITIES]
    targets = sweep_targets(world)
    secrets = {label: value.encode() for label, value in world["secrets"].items()}
    failures, requests = [], Counter()

    for identity in identities:
        for path, (name, methods) in sorted(targets.items()):
            for method in methods:
                recorder = WriteRecorder()
                try:
                    with transaction.atomic(), connection.execute_wrapper(recorder):
                        response = identity.send(method, path)
                        body = body_of(response)
                        raise Rollback
                except Rollback:
                    pass
                requests[identity.name] += 1
                where = f"{identity.name} {method.upper()} {path} ({name}) -> {response.status_code}"
                if response.status_code >= 500 and (name, method, response.status_code) not in ALLOWED_SERVER_ERRORS:
                    failures.append(f"server error: {where}")
                if (identity.name in READ_ONLY and 200 <= response.status_code < 400 and recorder.writes
                        and not allowed_write(name, method, identity.name)):
                    failures.append(f"write by a read-only identity: {where}: {sorted(set(recorder.writes))}")
                exposed = [label for label, value in secrets.items()
                           if value in body or value in response.headers.get("Location", "").encode()]
                if exposed:
                    failures.append(f"secret in the response: {where}: {exposed}")

    report(f"role sweep: {len(targets)} URLs ({len({n for n, _ in targets.values()})} URL names), "
           f"{sum(requests.values())} requests: " + ", ".join(f"{k} {v}" for k, v in requests.items()))
    assert not failures, "\n".join(failures)


def test_the_sweep_reaches_every_kind_of_page(world):
    """The walk itself is not empty or partial: a guard against a sweep that checks nothing."""
    names = {name for name, _ in sweep_targets(world).values()}
    for expected in ("dashboard", "backups:store_detail", "xenpools:vm", "datastore-detail", "backup-run-cancel",
                     "accounts:user_update", "audit:event_detail", "api-schema", "pool-sync-status",
                     "backups:pool_cleanup",
                     "backups:device_server_detail", "backups:device_token_revoke", "device-server-register",
                     "device-server-assign-store", "device-registration-token-revoke"):
        assert expected in names


def test_every_pk_parameter_points_at_a_row(world):
    """Detail URLs are swept against real rows: a 404 on every detail page would test nothing."""
    admin = Identity("administrator", world["users"]["administrator"], world["tokens"]["administrator"])
    not_found = []
    for path, (name, methods) in sweep_targets(world).items():
        if "get" in methods and re.search(r"/\d+/", path) and name != "restore-point-disk-download":
            if admin.send("get", path).status_code == 404:
                not_found.append(f"{name} {path}")
    assert not not_found, "detail URLs that found no row (teach pk_for about their model):\n" + "\n".join(not_found)


# --- websocket topics -----------------------------------------------------------------------

def socket_headers(user):
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if user is not None:
        client = Client()
        client.force_login(user)
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    return headers


@pytest.mark.django_db(transaction=True)
def test_every_live_topic_as_every_identity_holds_its_roles(settings):
    from sesamweb.asgi import application

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    users = {"anonymous": None, "norole": make_user("ws-norole"),
             **{role.value: make_user(f"ws-{role.value}", role) for role in Role}}
    topics = [f"{prefix}:1" if kind.keyed else prefix for prefix, kind in sorted(live_topics._registry.items())]
    topics += ["no-such-topic", "runs:1" if not live_topics._registry["runs"].keyed else "runs"]
    assert len(topics) >= 7
    failures, frames = [], Counter()

    async def sweep(name, headers):
        ws = WebsocketCommunicator(application, "/ws/live/", headers=headers)
        connected, _ = await ws.connect()
        assert connected
        if name in ("anonymous", "norole"):
            expected = 4401 if name == "anonymous" else 4403
            closed = await ws.receive_output(timeout=5)
            if closed != {"type": "websocket.close", "code": expected}:
                failures.append(f"{name}: not closed with {expected}: {closed}")
            return
        role = Role(name)
        for topic in topics:
            await ws.send_json_to({"subscribe": [topic]})
            answer = await ws.receive_json_from(timeout=5)
            frames[name] += 1
            capability = live_topics.topic_capability(topic)
            allowed = capability is not None and capability in CAPABILITIES[role]
            if allowed and answer != {"subscribed": [topic]}:
                failures.append(f"{name} refused {topic}: {answer}")
            if not allowed and "error" not in answer:
                failures.append(f"{name} allowed {topic}: {answer}")
        await ws.send_to(text_data="{not json")
        if "error" not in await ws.receive_json_from(timeout=5):
            failures.append(f"{name}: a malformed frame was not answered with an error")
        await ws.disconnect()

    for name, user in users.items():
        async_to_sync(sweep)(name, socket_headers(user))
    report(f"websocket sweep: {len(topics)} topics, {sum(frames.values())} subscriptions: "
           + ", ".join(f"{k} {v}" for k, v in frames.items()))
    assert not failures, "\n".join(failures)
