"""One way to say a size, decimal (1 GB = 10^9 bytes), in the pages and in the CLI."""
from django.template import Context, Template

from backups.cli import human_bytes
from sesamweb.units import size_text


def test_sizes_are_decimal_with_one_decimal():
    assert [size_text(n) for n in (0, 1, 999, 1000, 1500, 20 * 10**9, 4 << 30, None)] == [
        "0 bytes", "1 byte", "999 bytes", "1.0 kB", "1.5 kB", "20.0 GB", "4.3 GB", "0 bytes"]


def test_the_cli_and_every_template_say_sizes_the_same_way():
    assert human_bytes(20 * 10**9) == "20.0 GB"
    # Django's own filesizeformat would say "18.6 GB" (binary); the builtin replaces it everywhere.
    assert Template("{{ n|filesizeformat }}").render(Context({"n": 20 * 10**9})) == "20.0\xa0GB"
