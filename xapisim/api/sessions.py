"""Login, logout and session validity (idle expiry)."""

import time

from ..errors import XapiError
from ..xmlrpc import Timestamp
from .registry import api


def check_session(sim, session) -> None:
    db = sim.db
    if not isinstance(session, str) or not db.exists("session", session):
        raise XapiError("SESSION_INVALID", session)
    now = time.monotonic()
    seen = sim.session_seen.get(session, now)
    if now - seen > sim.config.session_timeout:
        drop_session(sim, session)
        raise XapiError("SESSION_INVALID", session)
    sim.session_seen[session] = now


def drop_session(sim, session: str) -> None:
    sim.session_seen.pop(session, None)
    if sim.db.exists("session", session):
        sim.db.delete("session", session)


def drop_all_sessions(sim) -> None:
    for session in list(sim.db.all("session")):
        drop_session(sim, session)


def open_session(sim, user: str, originator: str = "") -> str:
    ref = sim.db.create("session", this_host=sim.master(), last_active=Timestamp.now(),
                        validation_time=Timestamp.now(), originator=originator, auth_user_name=user)
    sim.session_seen[ref] = time.monotonic()
    return ref


@api("session.login_with_password", session=False)
def login_with_password(call, uname, pwd, version="1.1", originator=""):
    if uname != "root" or pwd != call.sim.config.password:
        raise XapiError("SESSION_AUTHENTICATION_FAILED", uname, "Authentication failure")
    return open_session(call.sim, uname, originator)


@api("session.logout")
def logout(call):
    drop_session(call.sim, call.session)
    return ""


@api("session.get_this_host")
def get_this_host(call, session):
    check_session(call.sim, session)
    return call.db.get("session", session)["this_host"]
