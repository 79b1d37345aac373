"""Restore: any restore point back to a pool (engine, validation, wizard, replication)."""
