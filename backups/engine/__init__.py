"""The backup and restore engine: prepare a VM, stream its disks, store them, clean up.

One engine, three doors: the CLI, the REST API and the django-q2 task all call
backups.services, which runs backups.engine.backup.run_vm_backup on a worker.
"""
