"""The S3 tests' server fixture: without moto it skips on a developer machine, and fails on
CI, where a silent skip would leave S3 untested."""
import sys

import pytest

from .conftest import import_moto_server


@pytest.fixture
def moto_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "moto.server", None)  # the next import raises ImportError


def test_without_moto_the_s3_tests_skip_on_a_developer_machine(moto_missing, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        import_moto_server()


def test_without_moto_the_s3_tests_fail_on_ci(moto_missing, monkeypatch):
    monkeypatch.setenv("CI", "true")
    try:
        import_moto_server()
    except ImportError:
        return
    except pytest.skip.Exception:  # an OutcomeException: pytest.raises(ImportError) would let it skip this test
        pytest.fail("the S3 tests would be skipped on CI")
    pytest.fail("a missing moto went unnoticed")


def test_with_moto_the_server_module_is_returned(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert hasattr(import_moto_server(), "ThreadedMotoServer")
