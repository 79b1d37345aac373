"""The address a request came from, for the audit log and sign-in throttling.

X-Forwarded-For is written by whoever sends the request, so it is believed only when the peer
(REMOTE_ADDR) is one of SESAM_TRUSTED_PROXIES (addresses or networks). Each proxy appends the
address it received the request from, so the client is the nearest hop that is not itself a
trusted proxy, read from the right; anything to its left may be forged."""
import ipaddress

from django.conf import settings


def _address(text):
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def trusted_proxies():
    return [ipaddress.ip_network(entry, strict=False) for entry in settings.SESAM_TRUSTED_PROXIES]


def _is_trusted(address, proxies):
    return any(address.version == network.version and address in network for network in proxies)


def is_from_trusted_proxy(request) -> bool:
    peer = _address(request.META.get("REMOTE_ADDR", "") or "")
    return peer is not None and _is_trusted(peer, trusted_proxies())


def client_address(request) -> str:
    remote = request.META.get("REMOTE_ADDR", "") or ""
    if not is_from_trusted_proxy(request):
        return remote
    proxies = trusted_proxies()
    peer = _address(remote)
    client = peer
    for hop in reversed(request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        address = _address(hop)
        if address is None:
            break  # a malformed hop: nothing to its left can be trusted either
        client = address
        if not _is_trusted(address, proxies):
            break
    return str(client)
