import os
from urllib.parse import unquote, urlsplit

from django.core.management.base import BaseCommand, CommandError

from backups.choices import StoreKind
from backups.models import DataStore
from backups.repository import RepositoryError, StoreError, StoreExistsError
from backups.repository.chunks import DEFAULT_COMPRESSION_LEVEL
from backups.stores import adopt_store, create_store
from sesamweb.audit.log import acting_as


class Command(BaseCommand):
    help = (
        "Create a data store: a local directory (or NFS mount) or an S3-compatible bucket. "
        "S3 credentials come from the URL (https://KEY:SECRET@host/bucket/prefix) or from "
        "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. With --adopt: register a store that exists "
        "already (the console lost its database, or the store comes from another console)."
    )

    def add_arguments(self, parser):
        parser.add_argument("name")
        where = parser.add_mutually_exclusive_group(required=True)
        where.add_argument("--path", help="absolute directory of a local store (its parent must exist)")
        where.add_argument("--s3-url", help="http(s)://[KEY:SECRET@]host[:port]/bucket[/prefix]")
        key = parser.add_mutually_exclusive_group(required=True)
        key.add_argument("--passphrase-file", help="file holding the passphrase that protects the store's key")
        key.add_argument("--no-encryption", action="store_true", help="store chunks unencrypted")
        key.add_argument("--key-file", help="--adopt: the store's exported key file (instead of its passphrase)")
        parser.add_argument("--key-file-passphrase-file", help="file holding the key file's own passphrase, if any")
        parser.add_argument("--adopt", action="store_true",
                            help="register the existing store at --path / --s3-url; its restore points are "
                                 "listed from its manifests")
        parser.add_argument("--region", default="")
        parser.add_argument("--compression-level", type=int, default=DEFAULT_COMPRESSION_LEVEL,
                            help=f"zstd level, 1-19 (default {DEFAULT_COMPRESSION_LEVEL})")
        parser.add_argument("--cluster", default="", help="worker cluster (remote device server) of this store")
        parser.add_argument("--max-parallel-streams", type=int, default=2,
                            help="VM backups writing to this store at once, all jobs together (default 2)")

    def handle(self, *args, name, path, s3_url, passphrase_file, no_encryption, region, compression_level,
               cluster, max_parallel_streams, key_file, key_file_passphrase_file, adopt, **options):
        if DataStore.objects.filter(name=name).exists():
            raise CommandError(f"a data store named {name!r} exists already")
        if key_file and not adopt:
            raise CommandError("--key-file opens an existing store: add --adopt")
        passphrase = _read_secret(passphrase_file, "passphrase file")
        if passphrase is not None and len(passphrase) < 12 and not adopt:
            raise CommandError("the passphrase must have at least 12 characters")
        if adopt:
            return self.adopt(name, path, s3_url, region, cluster, max(1, max_parallel_streams), passphrase, key_file,
                              _read_secret(key_file_passphrase_file, "key file passphrase file"))
        settings = {"name": name, "passphrase": passphrase, "encrypted": not no_encryption,
                    "compression_level": compression_level, "cluster": cluster,
                    "max_parallel_streams": max(1, max_parallel_streams)}
        if path:
            settings.update(kind=StoreKind.LOCAL, path=os.path.abspath(path))
        else:
            settings.update(kind=StoreKind.S3, s3_region=region, **_parse_s3_url(s3_url))
        try:
            with acting_as(None, source="cli:add_store"):
                store = create_store(**settings)
        except StoreExistsError as exc:
            raise CommandError(f"{exc}: adopt it instead of creating a new one") from exc
        except (StoreError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"Data store {store.name} created at {store.location}."))
        if store.encrypted:
            self.stdout.write(
                "Its data is encrypted. Export the key file now and keep it somewhere safe, away from the "
                f"store:\n    manage.py export_key {store.name} --out {store.name}.key\n"
                "If the console is lost, the passphrase or the key file opens the store; losing both "
                "means losing every backup in it."
            )


    def adopt(self, name, path, s3_url, region, cluster, max_parallel_streams, passphrase, key_file,
              key_file_passphrase):
        where = ({"kind": StoreKind.LOCAL, "path": os.path.abspath(path)} if path
                 else {"kind": StoreKind.S3, "s3_region": region, **_parse_s3_url(s3_url)})
        try:
            key = open(key_file, "rb").read() if key_file else None
        except OSError as exc:
            raise CommandError(f"cannot read the key file: {exc}") from exc
        try:
            with acting_as(None, source="cli:add_store"):
                store = adopt_store(name=name, cluster=cluster, max_parallel_streams=max_parallel_streams,
                                    passphrase=passphrase, key_file=key,
                                    key_file_passphrase=key_file_passphrase, **where)
        except (RepositoryError, ValueError) as exc:      # no store there, a wrong key, ...
            raise CommandError(str(exc)) from exc
        points = store.restore_points.count()
        self.stdout.write(self.style.SUCCESS(
            f"Data store {store.name} at {store.location} adopted: {points} restore point(s) listed."))


def _read_secret(path, what):
    if not path:
        return None
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError as exc:
        raise CommandError(f"cannot read the {what}: {exc}") from exc


def _parse_s3_url(url):
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CommandError("--s3-url must look like https://host[:port]/bucket[/prefix]")
    bucket, _, prefix = parts.path.lstrip("/").partition("/")
    if not bucket:
        raise CommandError("--s3-url must name a bucket: https://host/bucket[/prefix]")
    access_key = unquote(parts.username or "") or os.environ.get("AWS_ACCESS_KEY_ID", "")
    secret = unquote(parts.password or "") or os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    if not access_key or not secret:
        raise CommandError("S3 credentials missing: put KEY:SECRET@ in the URL or set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
    port = f":{parts.port}" if parts.port else ""
    return {"s3_endpoint": f"{parts.scheme}://{parts.hostname}{port}", "s3_bucket": bucket,
            "s3_prefix": prefix.strip("/"), "s3_access_key": access_key, "s3_secret": secret}
