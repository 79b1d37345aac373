"""Acting on the simulated pool the way an administrator would, through the real XenAPI client."""
from contextlib import contextmanager

import XenAPI


@contextmanager
def xenapi_session(url, password="demo"):
    session = XenAPI.Session(url, ignore_ssl=True)
    session.xenapi.login_with_password("root", password, "1.0", "tests")
    try:
        yield session.xenapi
    finally:
        try:
            session.xenapi.session.logout()
        except Exception:  # noqa: BLE001 - the pool may be gone at the end of a test
            pass


def guest_vms(x):
    return {ref: r for ref, r in x.VM.get_all_records().items()
            if not (r["is_a_template"] or r["is_control_domain"] or r["is_a_snapshot"])}


def vm_by_power_state(x, state):
    return next((ref, r) for ref, r in guest_vms(x).items() if r["power_state"] == state)
