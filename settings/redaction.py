"""Secrets out of every log line: keys, passwords and tokens, however the client spelled them.

Names are compared after percent-decoding (and ``+`` as a space), the way the gateway reads them: a
query's ``api%5Fkey=`` is the ``api_key`` parameter to Starlette (RFC 3986 makes ``%5F`` and ``_`` the
same character), so it is redacted as one. Values are replaced in the raw text, whatever their encoding.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any
from urllib.parse import unquote_plus

# Values of these keys (structured fields, header names, query parameter names) are never written.
SECRET_NAMES = frozenset(
    {"api_key", "apikey", "x-api-key", "api_keys", "password", "passwd", "authorization", "access_token",
     "token", "secret", "webhook_secret", "proxy-authorization", "cookie"}
)
_MASK = "***"
# name=value in a query string, a form body or a "name=value" log text; the name may be percent-encoded.
_PARAM = re.compile(r"(?P<name>[\w%+.~-]{1,64})=(?P<value>[^&\s\"';,]+)")
# "scheme://user:password@host": the password may hold '@' or ':' unencoded; it ends at the last '@'
# before the host's '/'.
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^\s/]+@", re.IGNORECASE)
# An Authorization header's credentials logged as text.
_AUTH_SCHEME = re.compile(r"\b((?:bearer|basic|token)\s+)[A-Za-z0-9._~+/-]{8,}=*", re.IGNORECASE)
# A download link's token is its own credential (GET /download/<token>, no key): masked in logged paths.
_DOWNLOAD_TOKEN = re.compile(r"(/download/)[^/?\s\"']+")
# Nested structures are walked this deep (a logged headers dict, a list of them); deeper is left alone.
_MAX_DEPTH = 4


def _decoded_name(raw: str) -> str:
    """The parameter's name as the gateway reads it; decoded until stable so ``%255F`` counts too."""
    if "%" not in raw and "+" not in raw and raw.isascii():
        return raw.strip().lower()  # the usual case, a plain identifier: no decoding to do
    name = raw
    for _ in range(3):
        decoded = unquote_plus(name)
        if decoded == name:
            break
        name = decoded
    if not name.isascii():  # fullwidth letters spelling api_key: no name to the gateway, but a key was meant
        name = unicodedata.normalize("NFKC", name)
    return name.strip().lower()


def is_secret_name(name: str) -> bool:
    """Whether a field, header or parameter of this name carries a secret (any case, any encoding)."""
    decoded = _decoded_name(name)
    return decoded in SECRET_NAMES or decoded.replace("-", "_") in SECRET_NAMES


def _mask_param(match: re.Match[str]) -> str:
    if is_secret_name(match.group("name")):
        return f"{match.group('name')}={_MASK}"
    return match.group(0)


def scrub_text(text: str) -> str:
    """``text`` with query secrets, URL passwords and Authorization credentials masked."""
    if "=" in text:
        text = _PARAM.sub(_mask_param, text)
    if "@" in text:
        text = _URL_PASSWORD.sub(rf"\1{_MASK}@", text)
    if " " in text:
        text = _AUTH_SCHEME.sub(rf"\1{_MASK}", text)
    if "/download/" in text:
        text = _DOWNLOAD_TOKEN.sub(rf"\1{_MASK}", text)
    return text


def scrub(value: Any, depth: int = 0) -> Any:
    """A copy of a logged value (text, mapping, list) with every secret in it masked."""
    if isinstance(value, str):
        return scrub_text(value)
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, dict):
        return {k: _MASK if isinstance(k, str) and is_secret_name(k) else scrub(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(scrub(v, depth + 1) for v in value)
    return value


def redact_processor(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: secrets out of every field of the event (and of the event text itself)."""
    for key, value in event_dict.items():
        if is_secret_name(key):
            event_dict[key] = _MASK
        elif isinstance(value, str | dict | list | tuple):
            event_dict[key] = scrub(value)
    return event_dict
