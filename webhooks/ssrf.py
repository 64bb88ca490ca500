"""The guard that keeps webhook calls from being turned against our own network (SSRF).

A webhook URL must be http(s) and its host must resolve only to public addresses, unless an
address is inside ``MH_WEBHOOK_ALLOWED_NETS``. The check runs when a webhook is saved AND before
every send, and the sender connects to the address it checked (not a second lookup that a
rebinding DNS server could answer differently), sending the real Host header and TLS SNI.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import pgettext


# The messages are in the active language: the webhook form shows them in the admin's; the API
# (always English) and the worker (no language activated: English) store and return them as the
# contract's English.
class UnsafeUrl(ValueError):
    """The URL may not be called; the message says why, for the admin."""


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (``address_url`` has the IP as host) and the names to send."""

    url: str
    address_url: str
    host_header: str
    hostname: str
    ip: str


def allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(net, strict=False) for net in settings.MH_WEBHOOK_ALLOWED_NETS]


def address_allowed(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if any(ip in net for net in allowed_networks()):
        return True
    # is_global excludes loopback, private (RFC 1918, ULA), link-local, CGNAT, documentation and
    # reserved ranges; multicast is global for some ranges but is never a webhook receiver.
    return ip.is_global and not ip.is_multicast


def split_url(url: str) -> tuple[str, str, int]:
    """(scheme, hostname, port) of an http(s) URL, or UnsafeUrl."""
    if not isinstance(url, str) or not url.strip():
        raise UnsafeUrl(pgettext("webhook URL", "is required"))
    if len(url) > 2000:
        raise UnsafeUrl(_("may be at most 2000 characters"))
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(_("is not a valid URL (%(error)s)") % {"error": exc}) from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrl(_("must start with http:// or https://"))
    if not parts.hostname:
        raise UnsafeUrl(_("has no host"))
    if parts.username or parts.password:
        raise UnsafeUrl(_("may not contain a user name or password"))
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def resolve(hostname: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeUrl(_("host %(host)s does not resolve (%(error)s)") % {"host": hostname, "error": exc}) from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_url(url: str) -> Target:
    """Resolve and check ``url``; every address it resolves to must be allowed (a name that
    resolves to one public and one private address is refused as a whole)."""
    scheme, hostname, port = split_url(url)
    addresses = resolve(hostname, port)
    if not addresses:
        raise UnsafeUrl(_("host %(host)s does not resolve") % {"host": hostname})
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not address_allowed(ip):
            raise UnsafeUrl(
                _("resolves to %(address)s, a loopback, private or link-local address (allow it with "
                  "MH_WEBHOOK_ALLOWED_NETS)") % {"address": address}
            )
    chosen = addresses[0]
    parts = urlsplit(url.strip())
    ip_host = f"[{chosen}]" if ":" in chosen else chosen
    default_port = 443 if scheme == "https" else 80
    netloc = ip_host if port == default_port else f"{ip_host}:{port}"
    host_header = parts.netloc.rsplit("@", 1)[-1]
    address_url = parts._replace(netloc=netloc).geturl()
    return Target(url=url, address_url=address_url, host_header=host_header, hostname=hostname, ip=chosen)
