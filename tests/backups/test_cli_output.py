"""What the CLI prints: the progress bar redraws one line and never prints an empty one;
list_backups' columns line up whatever the lengths of store names, ids and VM names."""
import io
from datetime import timedelta

from django.core.management import call_command
from django.core.management.base import OutputWrapper
from django.utils import timezone

from backups.cli import ProgressBar
from backups.stores import create_store, open_repository
from tests.backups.repository.diskdata import write_disk

from .test_views import PASSPHRASE


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_on_a_terminal_the_bar_redraws_one_line_and_ends_it_once():
    out = Terminal()
    bar = ProgressBar(OutputWrapper(out), label="web-01")
    bar.update(0.25, "Streaming disks 1.0 GB/4.0 GB")
    bar.update(0.5, "Streaming disks 2.0 GB/4.0 GB")
    bar.done()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n") and text.count("\r") == 2
    assert "\n\n" not in text and " 50.0% Streaming disks 2.0 GB/4.0 GB" in text


def test_a_bar_never_drawn_prints_no_empty_line():
    for out in (Terminal(), io.StringIO()):
        bar = ProgressBar(OutputWrapper(out), label="web-01")
        bar.done()
        bar.note("warning: something")
        assert out.getvalue() == "warning: something\n"


def test_off_a_terminal_the_bar_prints_a_line_now_and_then():
    out, now = io.StringIO(), [0.0]
    bar = ProgressBar(OutputWrapper(out), label="web-01", clock=lambda: now[0])
    bar.update(0.1, "Connecting to the pool")
    bar.update(0.2, "")                  # within 10 s: not printed
    now[0] = 11.0
    bar.update(0.3, "")
    bar.done()
    assert out.getvalue().splitlines() == ["web-01  10.0% Connecting to the pool", "web-01  30.0%"]


def test_list_backups_columns_line_up(tmp_path, db):
    stores = [create_store(name=name, path=str(tmp_path / name), passphrase=PASSPHRASE)
              for name in ("a", "a-store-with-a-much-longer-name")]
    # The second id is longer than the column's usual width, and fits the uuid column (36).
    for store, vm in zip(stores, ("vm-a", "a-vm-id-longer-than-24-characters")):
        repo = open_repository(store)
        with repo.start_backup(vm, timezone.now() - timedelta(hours=1)) as writer:
            write_disk(writer, "xvda", b"x" * store.chunk_size)
            writer.commit()
    out = io.StringIO()
    call_command("list_backups", stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[0].startswith("ID")
    for heading in ("VM", "TAKEN (UTC)", "METHOD", "KIND"):
        column = lines[0].index(heading)
        assert all(line[column - 2:column] == "  " and line[column] != " " for line in lines[1:]), heading
    stored_end = lines[0].index("STORED") + len("STORED")
    assert all(line[stored_end - 1] != " " and line[stored_end:stored_end + 2] == "  " for line in lines[1:])
