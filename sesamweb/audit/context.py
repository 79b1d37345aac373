"""The request (user, source address) behind the current change, if any.

Services record audit events without being handed the request: the middleware sets it
here for web requests; commands and workers set an actor explicitly.
"""
import contextvars

acting_request = contextvars.ContextVar("acting_request", default=None)
