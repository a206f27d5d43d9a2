"""Server URLs as the user gives them, and as they may be shown.

A base URL may carry credentials (`http://user:password@host/v1`, a server behind a proxy that asks
for HTTP basic auth). The OpenAI SDK's HTTP client then sends `Authorization: Basic ...` made from
them in place of the bearer key; the direct HTTP path does the same (`split_credentials`). Anything
printed or stored shows a URL only through `redact_url`, and messages that may quote one (a
connection error, a server's answer) go through `redact_urls` on their way out.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import unquote, urlsplit, urlunsplit

# scheme://userinfo@ : what a URL with credentials looks like inside any text.
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/\s@]+)@")
HIDDEN = "***"


def _host_and_port(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address goes back into brackets
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def redact_url(url: str | None) -> str | None:
    """`url` fit to print or store: credentials shown as ***, the query string (which may hold a
    key) dropped."""
    if not url:
        return url
    parts = urlsplit(url)
    netloc = _host_and_port(url)
    if parts.username is not None or parts.password is not None:
        netloc = f"{HIDDEN}@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def redact_urls(text: str) -> str:
    """`text` with the credentials of every URL in it replaced by ***."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{HIDDEN}@", text)


def base_url_problem(url: str) -> str | None:
    """Why `url` cannot be an OpenAI-compatible server's base URL, or None when it can.

    Checked before any client is built: httpx raised InvalidURL / ValueError tracebacks for a bad
    port, and a URL without http(s):// only failed as "Connection error."
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check (ValueError when not 0-65535)
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("http", "https"):
        return "it must start with http:// or https://"
    if not parts.hostname:
        return "it names no host"
    return None


def shown_url(url: str) -> str:
    """`url` fit for an error message, even when it does not parse: anything before an @ hidden."""
    if "://" in url:
        return redact_urls(url)
    return re.sub(r"^[^/\s]*@", f"{HIDDEN}@", url)


def has_credentials(url: str | None) -> bool:
    if not url:
        return False
    parts = urlsplit(url)
    return parts.username is not None or parts.password is not None


def split_credentials(url: str) -> tuple[str, str | None]:
    """(the URL without credentials, the `Authorization` value they stand for, or None).

    The header is what the SDK's HTTP client makes of them: `Basic` with base64 of
    `user:password`, both percent-decoded and sent as UTF-8.
    """
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    clean = urlunsplit((parts.scheme, _host_and_port(url), parts.path, parts.query, parts.fragment))
    user_pass = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    return clean, "Basic " + base64.b64encode(user_pass.encode("utf-8")).decode("ascii")
