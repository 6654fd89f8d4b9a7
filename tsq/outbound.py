"""Where tsq may send requests: the one policy of every outbound URL (URL targets, `notify:`
webhooks, connector URLs).

Whoever can deploy a loop chooses URLs that the *server* then calls, and the answer of a target
lands in the run record; without a policy, a loop could read the cloud metadata service or any
internal host the server can reach. So a destination is refused when any address its name
resolves to is loopback, link-local (169.254/16, fe80::/10: the metadata services), private
(10/8, 172.16/12, 192.168/16, fc00::/7), unspecified, multicast or otherwise not global, unless
`outbound_allow` names it: CIDRs (`10.0.0.0/8`), hosts (`influx.internal`) or host:port
(`127.0.0.1:8086`), comma-separated, or `*` for any.

Loopback is allowed without listing while the server listens on loopback only: then only local
users reach the API, and they can reach loopback themselves (the local start needs no setting).
Bound to any other address, a loopback destination is refused like the rest.

URLs are checked at deploy (`refusal`, a problem of the loop file) and again by every request,
since DNS can change: the clients of `client()` resolve the name, check each address and, for
plain HTTP, connect to the address checked (a name cannot resolve to a public address for the
check and a private one for the connection); over HTTPS the certificate ties the connection to
the name. They ignore HTTP(S)_PROXY: a proxy would make the request from elsewhere, out of
sight of the check.

Connectors are plug-ins opened through a fixed protocol (`open(config, data_dir)`), so the
policy they use is the process's, set by the service from its settings (`configure`).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tsq.errors import ConfigError, OutboundRefused
from tsq.masking import mask_url

if TYPE_CHECKING:
    import httpx

__all__ = ["ALLOW_HINT", "OutboundPolicy", "client", "configure", "current"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
ALLOW_HINT = ("outbound_allow (tsq.toml), --outbound-allow or TSQ_OUTBOUND_ALLOW "
              "(CIDRs, host or host:port, comma-separated)")
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class OutboundPolicy:
    loopback: bool = True  # loopback allowed unlisted: the server listens on loopback only
    listen_host: str = "127.0.0.1"  # for messages: why loopback is or is not allowed
    networks: tuple[Network, ...] = ()
    hosts: frozenset[tuple[str, int | None]] = frozenset()  # (name or address, port or any)
    anything: bool = False  # `*`

    @classmethod
    def of(cls, listen_host: str, allow: str) -> OutboundPolicy:
        """The policy of a server listening on `listen_host` with `outbound_allow` = `allow`;
        ConfigError naming an entry that is neither a CIDR nor a host[:port]."""
        networks: list[Network] = []
        hosts: set[tuple[str, int | None]] = set()
        anything = False
        for entry in (part.strip() for part in allow.split(",")):
            if not entry:
                continue
            if entry == "*":
                anything = True
            elif "/" in entry:
                try:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    raise ConfigError(f"outbound_allow: {entry!r} is not a network; expected "
                                      f"a CIDR like 10.0.0.0/8 or fd00::/8") from None
            else:
                hosts.add(_host_entry(entry))
        return cls(_is_loopback_name(listen_host), listen_host, tuple(networks),
                   frozenset(hosts), anything)

    def refusal(self, url: str) -> str | None:
        """Why `url` may not be called (None: it may, or its name does not resolve now, which
        the request will find out), for a loop-file problem."""
        try:
            self.address(url)
        except OutboundRefused as exc:
            return exc.message
        except ValueError as exc:  # a port out of range, a name IDNA cannot encode
            return f"{mask_url(url)} is not a URL tsq can call: {exc}"
        except OSError:
            pass
        return None

    def address(self, url: str) -> str:
        """The address to connect to for `url`: its first, once every address its host
        resolves to is allowed. OutboundRefused saying why if one is not; OSError when the
        name does not resolve, ValueError when the URL's port or name is not valid."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 80)
        addresses = _resolve(host, port)
        literal = _literal(host)
        if literal is not None:
            host = str(literal)  # one spelling of each address, as the allow-list has it
        for address in addresses:
            why = self._why_refused(host, port, address)
            if why is not None:
                resolved = "" if literal is not None else f" resolves to {address}, which"
                shown = mask_url(url)
                raise OutboundRefused(
                    f"{shown} is refused: {host}{resolved} is {why}; tsq calls such addresses "
                    f"only when they are listed in {ALLOW_HINT}",
                    details={"url": shown, "address": str(address)})
        return str(addresses[0])

    def _why_refused(self, host: str, port: int, address: Address) -> str | None:
        kind = _kind(address)
        if kind is None or self.anything:
            return None
        if kind == "loopback" and self.loopback:
            return None
        if any(address in network for network in self.networks if
               network.version == address.version):
            return None
        if {(host, port), (host, None), (str(address), port), (str(address), None)} & self.hosts:
            return None
        if kind == "loopback":
            return (f"a loopback address, and this server listens on {self.listen_host}, "
                    f"where others may reach it")
        return kind


def _kind(address: Address) -> str | None:
    """What kind of non-public address `address` is; None for a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if address.is_loopback:
        return "loopback"  # said with where the server listens (_why_refused)
    if address.is_link_local:
        return "a link-local address (where cloud metadata services answer)"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:
        return "a private address"
    if not address.is_global or address.is_reserved:
        return "not a public address"
    return None


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _resolve(host: str, port: int) -> list[Address]:
    literal = _literal(host)
    if literal is not None:
        return [literal]
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # getaddrinfo gives IPv6 addresses with a scope (fe80::1%eth0): the address is before the %
    return list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0])
                              for info in found))


def _host_entry(entry: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]:port` or a bare IPv6 address, as (host, port or None)."""
    host, port = entry, ""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest.removeprefix(":")
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    if not host or (port and not port.isdigit()):
        raise ConfigError(f"outbound_allow: {entry!r} is not a host; expected a name or "
                          f"address, optionally with :port (influx.internal:8086, "
                          f"[::1]:9090)")
    try:
        host = str(ipaddress.ip_address(host))  # one spelling of each address
    except ValueError:
        host = host.lower()
    return host, int(port) if port else None


def _is_loopback_name(host: str) -> bool:
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


# -- the process's policy and its clients -----------------------------------------------------

class _Current:
    """The process's policy; a server on loopback with nothing listed until `configure`."""

    def __init__(self) -> None:
        self.policy = OutboundPolicy()
        self.lock = threading.Lock()


_current = _Current()


def configure(policy: OutboundPolicy) -> None:
    """Make `policy` the one of every outbound request of this process from now on."""
    with _current.lock:
        _current.policy = policy


def current() -> OutboundPolicy:
    return _current.policy


def client(**options: Any) -> httpx.Client:
    """An httpx client (with `options`) whose every request obeys the outbound policy: a
    refused one raises OutboundRefused before anything is sent."""
    import httpx

    return httpx.Client(transport=_guarded()(), trust_env=False, **options)


@cache
def _guarded() -> type[httpx.BaseTransport]:
    """The transport class that checks each request's destination against the process's
    policy; made on first use, as httpx is imported then: a process that never calls out
    (`tsq run` without a server) does not pay for its import."""
    import httpx

    class Guarded(httpx.BaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.HTTPTransport()

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            try:
                address = current().address(str(request.url))
            except (OSError, ValueError) as exc:
                raise httpx.ConnectError(f"{request.url.host} does not resolve: {exc}",
                                         request=request) from None
            if request.url.scheme == "http" and address != request.url.host:
                # connect to the address checked; the Host header keeps the name
                request.url = request.url.copy_with(host=address)
            return self.inner.handle_request(request)

        def close(self) -> None:
            self.inner.close()

    return Guarded
