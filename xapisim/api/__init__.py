"""XenAPI methods. Importing the handler modules registers them in the method table."""


def load_handlers() -> None:
    from . import pool, sessions, storage, vm  # noqa: F401  (registration side effect)
