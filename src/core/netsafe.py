"""One small HTTP client for everything gguf-shootout fetches: a URL and address policy, a
wall-clock deadline and a byte cap per fetch, and one clear error for every way a fetch can fail.

- Only ``http`` and ``https`` are fetched; ``file:``, ``ftp:`` and every other scheme are refused.
- The host is resolved here, every address is checked, and the connection goes to a checked
  address (so a name cannot resolve to one address for the check and another for the connect).
  Loopback, link-local, private, shared, multicast and reserved addresses are refused unless the
  policy allows them (all, or listed networks); the refusal names the config option that allows it.
  The same check runs for every hop of a redirect.
- ``deadline_s`` bounds the whole fetch (resolution, connect, TLS, headers, body, redirects) by
  the wall clock: a watchdog shuts the socket down when it passes, so a server that trickles one
  byte a second is abandoned on time. ``max_bytes`` caps the body (a larger one is refused, not cut).
- ``on_chunk`` sees each piece of the body as it arrives (a streamed answer's lines can be timed).
- ``http.client``'s exceptions (IncompleteRead, BadStatusLine, LineTooLong, too many headers,
  InvalidURL), socket and TLS errors all become :class:`FetchError`, one sentence naming the URL.

Proxies from the environment are not used: the address check needs the real destination.
Over 400 lines: the address policy, the watchdog and the exchange share one socket; kept together.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from email.message import Message
from typing import Callable, Iterable, Union

from core.errors import ShootoutError

USER_AGENT = "gguf-shootout/0.1"
SCHEMES = ("http", "https")
REDIRECTS = (301, 302, 303, 307, 308)

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class FetchError(ShootoutError):
    """A fetch that did not give a usable answer: ``message`` names the URL and why."""

    def __init__(self, url: str, reason: str, hint: str | None = None):
        super().__init__(f"{url}: {reason}", hint)
        self.url, self.reason = url, reason


class Refused(FetchError):
    """The URL or one of its addresses is outside the policy: nothing was sent."""


class DeadlineExceeded(FetchError):
    pass


class Unreachable(FetchError):
    """No connection could be made (refused, no route, no such host): nothing was sent."""


class TooLarge(FetchError):
    pass


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """``["127.0.0.1", "10.0.0.0/8", "::1"]`` -> networks; ValueError naming a bad entry."""
    out = []
    for v in values:
        try:
            out.append(ipaddress.ip_network(str(v).strip(), strict=False))
        except ValueError:
            raise ValueError(f"'{v}' is not an IP address or network (e.g. 192.168.1.10 or 10.0.0.0/8)") from None
    return tuple(out)


def address_kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why an address is not a public one ('loopback', 'private', ...), or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind in ("loopback", "link_local", "unspecified", "multicast", "private", "reserved"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    if not ip.is_global:
        return "non-public"
    return None


@dataclass(frozen=True)
class Policy:
    """What a fetch may do. ``allow_private``: False (public addresses only), True (any address), or
    networks that are allowed besides the public ones. The ``*_option`` names go into the messages."""

    allow_private: bool | tuple[Network, ...] = False
    deadline_s: float = 15.0
    max_bytes: int = 5_000_000
    max_redirects: int = 5
    private_option: str = "allow_private_addresses"
    deadline_option: str = "timeout_s"
    bytes_option: str = "max_fetch_bytes"
    user_agent: str = USER_AGENT

    def check_address(self, url: str, host: str, ip_text: str) -> None:
        ip = ipaddress.ip_address(ip_text.split("%", 1)[0])
        kind = address_kind(ip)
        if kind is None or self.allow_private is True:
            return
        if isinstance(self.allow_private, tuple) and any(ip in net for net in self.allow_private
                                                         if net.version == ip.version):
            return
        shown = host if host == ip_text else f"{host} ({ip_text})"
        raise Refused(url, f"refused: {shown} is a {kind} address",
                      f"{self.private_option} allows it (true, or a list of addresses and networks)")


@dataclass
class Response:
    url: str  # the final URL, after redirects
    status: int
    reason: str
    headers: Message = field(repr=False)
    body: bytes = field(repr=False)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def content_type(self) -> str:
        return self.headers.get_content_type() if self.headers.get("Content-Type") else ""

    @property
    def charset(self) -> str | None:
        """The charset the HTTP header names, if any (and if Python knows it)."""
        cs = self.headers.get_content_charset() if self.headers.get("Content-Type") else None
        if not cs:
            return None
        import codecs

        try:
            return codecs.lookup(cs).name
        except LookupError:
            return None

    def raise_for_status(self) -> "Response":
        if not self.ok:
            raise FetchError(self.url, f"the server answered HTTP {self.status} {self.reason}".rstrip())
        return self


def normalize_url(url: str) -> str:
    """A URL as a browser would send it: scheme and host lower-cased, a non-ASCII host in IDNA,
    spaces and non-ASCII characters in the path and query percent-encoded. ValueError if it cannot
    be a URL at all."""
    url = url.strip()
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        raise ValueError("it contains control characters")
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if parts.hostname is not None:
        host = parts.hostname
        try:
            host.encode("ascii")
        except UnicodeEncodeError:
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError:
                raise ValueError(f"the host name '{parts.hostname}' is not valid") from None
        if ":" in host:
            host = f"[{host}]"
        userinfo = netloc.rpartition("@")[0]
        port = parts.port  # ValueError for a bad port
        netloc = (userinfo + "@" if userinfo else "") + host + (f":{port}" if port is not None else "")
    safe = "/%:@!$&'()*+,;=-._~"
    path = urllib.parse.quote(parts.path, safe=safe)
    query = urllib.parse.quote(parts.query, safe=safe + "?")
    fragment = urllib.parse.quote(parts.fragment, safe=safe + "?")
    return urllib.parse.urlunsplit((parts.scheme.lower(), netloc, path, query, fragment))


def _split(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, request target) of an http(s) URL; Refused or FetchError otherwise."""
    try:
        norm = normalize_url(url)
        parts = urllib.parse.urlsplit(norm)
        port = parts.port
    except ValueError as exc:
        raise FetchError(url, f"not a valid URL ({exc})") from None
    if parts.scheme not in SCHEMES:
        what = f"'{parts.scheme}:' links" if parts.scheme else "links without a scheme"
        raise Refused(url, f"refused: {what} are never fetched (only http and https)")
    if not parts.hostname:
        raise FetchError(url, "not a valid URL (no host)")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), target


class _Watchdog:
    """Shuts the socket down when the deadline passes, waking any read or write blocked on it."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.fired = False
        self.sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            if self.sock is not None:
                try:
                    self.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            self.sock = sock
            if self.fired:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cancel(self) -> None:
        self._timer.cancel()


def _remaining(deadline: float) -> float:
    return deadline - time.monotonic()


def _resolve(host: str, port: int, deadline: float) -> list[tuple[int, str]]:
    """(family, address) pairs for a host, within the deadline (getaddrinfo has no timeout of its own)."""
    try:
        ipaddress.ip_address(host)
        return [(socket.AF_INET6 if ":" in host else socket.AF_INET, host)]
    except ValueError:
        pass
    box: dict = {}

    def work():
        try:
            box["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            box["error"] = exc

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(max(0.0, _remaining(deadline)))
    if t.is_alive():
        raise TimeoutError("resolving the host name took too long")
    if "error" in box:
        exc = box["error"]
        raise OSError(f"cannot resolve the host name '{host}' ({getattr(exc, 'strerror', None) or exc})")
    seen, out = set(), []
    for family, _, _, _, sockaddr in box["infos"]:
        if sockaddr[0] not in seen:
            seen.add(sockaddr[0])
            out.append((family, sockaddr[0]))
    return out


def _connect(url: str, host: str, port: int, policy: Policy, deadline: float, dog: _Watchdog) -> socket.socket:
    addrs = _resolve(host, port, deadline)
    allowed, first_refusal = [], None
    for family, ip in addrs:
        try:
            policy.check_address(url, host, ip)
            allowed.append((family, ip))
        except Refused as exc:
            first_refusal = first_refusal or exc
    if not allowed:
        raise first_refusal or OSError(f"'{host}' has no address")
    last: OSError | None = None
    for family, ip in allowed:
        sock = socket.socket(family, socket.SOCK_STREAM)
        dog.attach(sock)
        try:
            sock.settimeout(max(0.01, _remaining(deadline)))
            sock.connect((ip, port))
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last  # type: ignore[misc]


def _describe(exc: BaseException) -> str:
    """One sentence for a transport or protocol failure."""
    if isinstance(exc, http.client.IncompleteRead):
        expected = f" of {len(exc.partial) + exc.expected}" if exc.expected is not None else ""
        return f"the server closed the connection after {len(exc.partial)}{expected} bytes of the answer"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    if isinstance(exc, http.client.BadStatusLine):
        line = str(exc.line if hasattr(exc, "line") else exc).strip()[:80]
        return f"the answer is not HTTP (status line {line!r})"
    if isinstance(exc, http.client.LineTooLong):
        return f"the server sent a line longer than HTTP clients accept ({exc})"
    if isinstance(exc, http.client.InvalidURL):
        return f"not a valid URL ({exc})"
    if isinstance(exc, http.client.HTTPException):
        text = str(exc)
        if "more than" in text and "headers" in text:
            return f"the server sent too many headers ({text})"
        return f"the answer breaks the HTTP protocol ({type(exc).__name__}: {text or 'no detail'})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens there)"
    if isinstance(exc, ConnectionResetError):
        return "the server reset the connection"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"timed out ({exc})" if str(exc) else "timed out"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


def fetch(url: str, policy: Policy = Policy(), *, method: str = "GET", body: bytes | None = None,
          headers: dict[str, str] | None = None, follow_redirects: bool | None = None,
          on_chunk: Callable[[bytes], None] | None = None) -> Response:
    """One HTTP exchange under ``policy``. Any status comes back as a Response (redirects of a GET
    are followed); every failure is a :class:`FetchError` (:class:`Unreachable` when no connection
    could be made). ``on_chunk(bytes)`` is called with each piece of the body as it arrives."""
    follow = method in ("GET", "HEAD") if follow_redirects is None else follow_redirects
    deadline = time.monotonic() + policy.deadline_s
    dog = _Watchdog(deadline)
    try:
        current = url
        for hop in range(policy.max_redirects + 1):
            resp = _exchange(current, policy, deadline, dog, method, body, headers, on_chunk)
            location = resp.headers.get("Location")
            if not (follow and resp.status in REDIRECTS and location):
                return resp
            if hop == policy.max_redirects:
                raise FetchError(url, f"more than {policy.max_redirects} redirects (last to {location})")
            current = urllib.parse.urljoin(current, location.strip())
            if resp.status == 303:
                method, body = "GET", None
        raise AssertionError("unreachable")  # pragma: no cover
    finally:
        dog.cancel()


def _exchange(url: str, policy: Policy, deadline: float, dog: _Watchdog, method: str, body: bytes | None,
              headers: dict[str, str] | None, on_chunk: Callable[[bytes], None] | None = None) -> Response:
    scheme, host, port, target = _split(url)
    conn: http.client.HTTPConnection | None = None
    sock: socket.socket | None = None
    try:
        try:
            try:
                sock = _connect(url, host, port, policy, deadline, dog)
            except OSError as exc:
                if dog.fired or _remaining(deadline) <= 0:
                    raise
                raise Unreachable(url, _describe(exc)) from None
            if scheme == "https":
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
                dog.attach(sock)
                conn = http.client.HTTPSConnection(host, port, timeout=max(0.01, _remaining(deadline)))
            else:
                conn = http.client.HTTPConnection(host, port, timeout=max(0.01, _remaining(deadline)))
            conn.sock = sock
            hdrs = {"User-Agent": policy.user_agent, "Accept-Encoding": "identity", "Connection": "close",
                    **(headers or {})}
            conn.request(method, target, body=body, headers=hdrs)
            resp = conn.getresponse()
            length = resp.getheader("Content-Length")
            if length and length.strip().isdigit() and int(length) > policy.max_bytes:
                raise TooLarge(url, f"the answer is {int(length):,} bytes, more than the cap of "
                                    f"{policy.max_bytes:,}", f"{policy.bytes_option} raises the cap")
            data = bytearray()
            while True:
                try:
                    sock.settimeout(max(0.01, _remaining(deadline)))
                except OSError:  # newer Pythons (3.12.3, 3.13) close the socket object once the response holds the
                    pass         # connection; the read keeps the timeout set before, the watchdog the deadline
                try:
                    chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
                except http.client.IncompleteRead as exc:  # a chunked body cut short: count what came before
                    raise http.client.IncompleteRead(bytes(data) + exc.partial, exc.expected) from None
                if not chunk:
                    break
                data += chunk
                if on_chunk is not None:
                    on_chunk(chunk)
                if len(data) > policy.max_bytes:
                    raise TooLarge(url, f"the answer is larger than the cap of {policy.max_bytes:,} bytes",
                                   f"{policy.bytes_option} raises the cap")
                if dog.fired:
                    break
            if dog.fired:
                raise TimeoutError
            if resp.length:  # the connection closed before the Content-Length was reached
                raise http.client.IncompleteRead(bytes(data), resp.length)
            return Response(url=url, status=resp.status, reason=resp.reason or "", headers=resp.headers,
                            body=bytes(data))
        except FetchError:
            raise
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if dog.fired or _remaining(deadline) <= 0:
                raise DeadlineExceeded(url, f"gave up after {policy.deadline_s:g} s without a complete answer",
                                       f"{policy.deadline_option} sets the time allowed") from None
            raise FetchError(url, _describe(exc)) from None
    finally:
        if conn is not None:
            conn.close()
        elif sock is not None:
            sock.close()
