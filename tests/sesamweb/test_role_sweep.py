"""The role sweep: every URL of the URL map (pages and API, found by walking the resolver, so
pages added later are covered without anyone listing them) and every websocket topic, as
anonymous, signed in without a role, auditor, operator and administrator.

Fails on any 5xx, on any database write that succeeded (2xx/3xx) for an identity that may not
write, and on any secret in a response. Each request runs in a savepoint that is rolled back,
so a DELETE by the administrator does not take the rows the next URLs need."""
import re
from collections import Counter
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.db import connection, transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from rest_framework.test import APIClient

from backups.choices import BackupKind, BackupMethod, BackupPhase, RunStatus
from backups.models import BackupJob, BackupRun, DataStore, JobSchedule, RestorePoint, RestoreRun, VmBackup
from backups.stores import create_store
from sesamweb.accounts.models import ApiToken
from sesamweb.accounts.roles import CAPABILITIES, Role
from sesamweb.audit.log import record_event
from sesamweb.live import topics as live_topics
from tests.fixtures.summary import report
from tests.fixtures.users import TEST_PASSWORD, make_user
from xenpools.models import VDI, VIF, VM, Host, Network, Pool, StorageRepository, VirtualDisk

POOL_PASSWORD = "pool-password-sweep-7QX"
PASSPHRASE = "store passphrase sweep 5KD"
S3_SECRET = "s3-secret-sweep-9ZP"

IDENTITIES = ["anonymous", "norole", "auditor", "operator", "administrator"]
# Identities that may not change anything (operators may run backups and restores).
READ_ONLY = {"anonymous", "norole", "auditor"}
WRITE_METHODS = ("post", "put", "patch", "delete")

# Writes that succeed for a read-only identity on purpose: (URL name, method or "*", identity or "*").
ALLOWED_WRITES = {
    ("login", "*", "*"): "signing in counts failures and forgets expired ones (LoginFailure); PUT is POST there",
    ("audit:export", "get", "auditor"): "exporting the audit log is itself recorded in the audit log",
    ("logout", "post", "*"): "signing out ends one's own session",
    ("accounts:password_change", "post", "*"): "anyone signed in changes their own password (forced change)",
    ("accounts:token_revoke", "post", "*"): "anyone signed in revokes their own API tokens",
}
# Server errors that are the designed answer: (URL name, method, status).
ALLOWED_SERVER_ERRORS = {
    ("pool-sync", "post", 502): "the swept pool is unreachable on purpose; 502 Bad Gateway says so",
}
# Tables whose writes are not state changes: the session store (messages, sign-out).
IGNORED_TABLES = {"django_session"}

WRITE_SQL = re.compile(r'^\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+"?([A-Za-z0-9_]+)"?', re.IGNORECASE)


# --- the world the URLs point into ---------------------------------------------------------

@pytest.fixture
def world(tmp_path, db):
    now = timezone.now()
    users = {role.value: make_user(f"sweep-{role.value}", role) for role in Role}
    users["norole"] = make_user("sweep-norole")
    other = make_user("sweep-other", Role.OPERATOR)

    pool = Pool.objects.create(name="lab", address="127.0.0.1", port=1, uuid="pool-uuid", product_version="8.2.1")
    pool.set_password(POOL_PASSWORD)
    pool.save()
    host = Host.objects.create(pool=pool, uuid="host-uuid", ref="OpaqueRef:h", name="host-1", is_master=True)
    sr = StorageRepository.objects.create(pool=pool, uuid="sr-uuid", ref="OpaqueRef:sr", name="local")
    network = Network.objects.create(pool=pool, uuid="net-uuid", ref="OpaqueRef:n", name="lan")
    vm = VM.objects.create(pool=pool, uuid="11111111-1111-1111-1111-111111111111", ref="OpaqueRef:1",
                           name="web-01", power_state="Running", host=host)
    vdi = VDI.objects.create(pool=pool, uuid="vdi-uuid", ref="OpaqueRef:vdi", name="disk", sr=sr, virtual_size=8 << 20)
    VirtualDisk.objects.create(pool=pool, vm=vm, vdi=vdi, uuid="vbd-uuid", ref="OpaqueRef:vbd", userdevice="0")
    VIF.objects.create(pool=pool, vm=vm, network=network, uuid="vif-uuid", ref="OpaqueRef:vif", device="0")

    store = create_store(name="nas", path=str(tmp_path / "store"), passphrase=PASSPHRASE)
    s3_store = DataStore.objects.create(name="s3", kind="s3", s3_endpoint="http://127.0.0.1:1", s3_bucket="b",
                                        s3_access_key="AKIASWEEP", encrypted=False)
    s3_store.set_s3_secret(S3_SECRET)
    s3_store.save()

    job = BackupJob.objects.create(name="nightly", store=store)
    JobSchedule.objects.create(job=job, cron="0 22 * * *")
    run = BackupRun.objects.create(status=RunStatus.RUNNING, started_at=now, requested_by=users["operator"], job=job)
    point = RestorePoint.objects.create(store=store, point_id=f"{vm.uuid}/1700000000", vm_uuid=vm.uuid, vm_name=vm.name,
                                        taken_at=now - timedelta(hours=1), method=BackupMethod.NORMAL,
                                        kind=BackupKind.FULL, virtual_size=8 << 20, job=job)
    VmBackup.objects.create(run=run, vm=vm, pool=pool, vm_uuid=vm.uuid, vm_name=vm.name, store=store,
                            method=BackupMethod.NORMAL, kind=BackupKind.FULL, status=RunStatus.RUNNING,
                            phase=BackupPhase.STREAMING,
                            started_at=now, restore_point=point)
    RestoreRun.objects.create(point=point, store=store, store_point_id=point.point_id, source_vm_uuid=vm.uuid,
                              source_vm_name=vm.name, target_pool=pool, requested_by=users["operator"])

    tokens = {}
    for name, user in users.items():
        token, key = ApiToken.issue(user, "sweep")
        # Stamped as just used: token authentication then writes nothing for a minute.
        ApiToken.objects.filter(pk=token.pk).update(last_used=now)
        tokens[name] = key
    _, other_key = ApiToken.issue(other, "other")
    record_event("settings", actor=users["administrator"], message="sweep fixture")

    secrets = {
        "pool password": POOL_PASSWORD,
        "data store passphrase": PASSPHRASE,
        "data store key": store.data_key(),
        "S3 secret": S3_SECRET,
        "SESAM_SECRET_KEY": django_settings.SESAM_SECRET_KEY,
        "SECRET_KEY": django_settings.SECRET_KEY,
        "user password": TEST_PASSWORD,
        **{f"API token of {name}": key for name, key in {**tokens, "other": other_key}.items()},
    }
    return {"users": users, "tokens": tokens, "secrets": {k: v for k, v in secrets.items() if v},
            "vm": vm, "point": point, "store": store}


# --- the URL map ----------------------------------------------------------------------------

def url_patterns(patterns=None, namespace=None):
    """(name, URLPattern) of every pattern, namespaced like reverse() wants them."""
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        if isinstance(entry, URLResolver):
            inner = namespace
            if entry.namespace:
                inner = f"{namespace}:{entry.namespace}" if namespace else entry.namespace
            yield from url_patterns(entry.url_patterns, inner)
        else:
            yield (f"{namespace}:{entry.name}" if namespace and entry.name else entry.name), entry


def view_model(callback):
    view = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    queryset = getattr(view, "queryset", None)
    if queryset is not None:
        return queryset.model
    return getattr(view, "model", None)


# Path parameters by name; "pk" is the first row of the view's model (else of a model its
# URL name suggests), 1 when there is none.
PK_MODELS = {"run": BackupRun, "vm_backup": VmBackup, "vm-backup": VmBackup, "store": DataStore, "point": RestorePoint,
             "restore-point": RestorePoint, "restore": RestoreRun, "pool": Pool, "vm": VM, "token": ApiToken,
             "user": None, "job": BackupJob, "schedule": JobSchedule, "audit": None}


def pk_for(name, callback):
    from django.contrib.auth import get_user_model

    from sesamweb.audit.models import AuditEvent

    model = view_model(callback)
    if model is None:
        short = name.split(":")[-1]
        if short.startswith(("user", "accounts:user")) or "user" in short:
            model = get_user_model()
        elif "audit" in name or short.startswith("event"):
            model = AuditEvent
        else:
            model = next((m for prefix, m in PK_MODELS.items() if m is not None and short.startswith(prefix)), None)
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
        elif group != "action":
            base[group] = 1
    if "action" in groups:
        from backups.tasks import STORE_TASKS

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
                     "accounts:user_update", "audit:event_detail", "api-schema"):
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
