from django.core.management.base import BaseCommand, CommandError

from sesamweb.dashboard import doctor


class Command(BaseCommand):
    help = ("Check that this installation can back up: database, task broker, channel layer, a worker "
            "taking a task, each pool (sign-in, certificate, clock) and each data store (writable).")

    def add_arguments(self, parser):
        parser.add_argument("--worker-wait", type=int, default=doctor.WORKER_WAIT,
                            help="seconds a worker gets to run the test task (default %(default)s)")

    def handle(self, *args, worker_wait, **options):
        checks = [lambda c=check: c(wait=worker_wait) if c is doctor.check_workers else c()
                  for check in doctor.CHECKS]
        findings = doctor.run_checks(checks)
        width = max(len(f.check) for f in findings)
        for finding in findings:
            mark = self.style.SUCCESS("ok     ") if finding.ok else self.style.ERROR("PROBLEM")
            self.stdout.write(f"{mark} {finding.check:<{width}}  {finding.detail}")
            if finding.advice and not finding.ok:
                self.stdout.write(f"        {'':<{width}}  -> {finding.advice}")
        problems = [f.check for f in findings if not f.ok]
        if problems:
            raise CommandError(f"{len(problems)} problem(s): {', '.join(problems)}")
        self.stdout.write(self.style.SUCCESS("All good."))
