"""Backup jobs: which VMs, how, when, where to and how long to keep (design.md section 9).

A BackupJob owns its VM selection rule (evaluated at each run), its method options, data
store, retention and limits; its schedules are django-q2 Schedule rows that call one thin
task, run_job. A run creates one BackupRun with a VmBackup per selected VM, dispatched at
most `max_parallel_vms` at a time; retention runs after each run.
"""
