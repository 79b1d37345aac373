"""Named values of the audit log (what happened, and how it ended)."""
from django.db import models


class AuditAction(models.TextChoices):
    LOGIN = "login", "Sign-in"
    LOGIN_FAILED = "login_failed", "Failed sign-in"
    LOGIN_LOCKED = "login_locked", "Sign-in locked out"
    LOGOUT = "logout", "Sign-out"
    PASSWORD_CHANGE = "password_change", "Password change"
    TOKEN_CREATE = "token_create", "API token created"
    TOKEN_REVOKE = "token_revoke", "API token revoked"
    CREATE = "create", "Create"
    UPDATE = "update", "Update"
    DELETE = "delete", "Delete"
    JOB_START = "job_start", "Job start"
    JOB_CANCEL = "job_cancel", "Job cancel"
    BACKUP = "backup", "Backup"
    RESTORE = "restore", "Restore"
    KEY_EXPORT = "key_export", "Key export"
    VERIFY = "verify", "Verify"
    PRUNE = "prune", "Prune"
    GC = "gc", "Garbage collection"
    SYNC = "sync", "Inventory sync"
    TEST_CONNECTION = "test_connection", "Connection test"
    TRUST_CERTIFICATE = "trust_certificate", "Certificate trusted"
    AUDIT_VERIFY = "audit_verify", "Audit chain verified"
    AUDIT_EXPORT = "audit_export", "Audit log exported"


class AuditOutcome(models.TextChoices):
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"
    DENIED = "denied", "Denied"
