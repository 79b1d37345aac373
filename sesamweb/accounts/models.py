import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

TOKEN_PREFIX = "sesam_"


def hash_token(key: str) -> str:
    # Keys are 256 random bits: a plain digest is enough (nothing to brute-force).
    return hashlib.sha256(key.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet):
    def for_key(self, key: str):
        return self.select_related("user").filter(key_hash=hash_token(key)).first()


class ApiToken(models.Model):
    """A named API token. Only its hash is stored; the key is shown once, at creation."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    hint = models.CharField(max_length=12, editable=False, help_text="First characters, to tell tokens apart")
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["user", "name"], name="unique_token_name_per_user")]

    def __str__(self):
        return f"{self.name} ({self.hint}…)"

    @classmethod
    def issue(cls, user, name: str) -> tuple["ApiToken", str]:
        """Create a token; returns (token, key). The key cannot be recovered later."""
        key = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(user=user, name=name, key_hash=hash_token(key), hint=key[: len(TOKEN_PREFIX) + 4])
        return token, key

    def mark_used(self):
        now = timezone.now()
        # Once a minute is plenty and spares SQLite a write per API call.
        if self.last_used is None or (now - self.last_used).total_seconds() > 60:
            ApiToken.objects.filter(pk=self.pk).update(last_used=now)
            self.last_used = now


class AccountSettings(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account_settings")
    must_change_password = models.BooleanField(default=False)

    def __str__(self):
        return f"settings of {self.user}"

    @classmethod
    def for_user(cls, user):
        return cls.objects.get_or_create(user=user)[0]


class LoginFailure(models.Model):
    """One wrong password (for a user name, from an address) or unknown API token (from an
    address); recent ones slow further attempts of the same kind down (throttling.py)."""

    class Kind(models.TextChoices):
        PASSWORD = "password", "Wrong password"
        TOKEN = "token", "Unknown API token"

    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.PASSWORD)
    username = models.CharField(max_length=150, db_index=True)
    source = models.CharField(max_length=100, db_index=True)
    created = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self):
        return f"{self.username} from {self.source} at {self.created:%Y-%m-%d %H:%M:%S}"
