"""Shared fixtures: a running simulator (tests/fixtures/sim.py), users by role
(tests/fixtures/users.py), a headless browser (tests/fixtures/browser.py)."""
pytest_plugins = ["tests.fixtures.sim", "tests.fixtures.users", "tests.fixtures.browser", "tests.fixtures.cluster"]
