"""Who a key is: its project and its role, parsed from ``IFCFLOW_API_KEYS`` or made at run time.

An entry is ``project:role:key``; a bare key keeps the meaning it had before projects existed
(project ``default``, role ``admin``), so existing deployments keep working. Keys are never kept in
the clear past parsing: each is held as its sha256 (keys are long random strings, so a fast hash is
as good as a slow one against guessing) and compared with ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

DEFAULT_PROJECT = "default"
PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# A key made by ifcflow: a prefix says what it is (secret scanners find it), then 256 random bits.
KEY_PREFIX = "ifk_"


class Role(StrEnum):
    """What a key may do; each role includes the ones before it."""

    read = "read"  # status, files, live streams of its project
    submit = "submit"  # + operations, uploads, workflows, schedules, cancel within its project
    admin = "admin"  # + every project, key management


_RANK = {Role.read: 0, Role.submit: 1, Role.admin: 2}


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated caller of a request: ``key_id`` names the key in logs and audit lines."""

    key_id: str
    project: str
    role: Role
    name: str = ""

    def may(self, role: Role) -> bool:
        """Whether this caller's role includes ``role``."""
        return _RANK[self.role] >= _RANK[role]

    def sees(self, project: str | None) -> bool:
        """Whether this caller may see a thing of ``project`` (None, a thing made before projects: default)."""
        return self.role is Role.admin or (project or DEFAULT_PROJECT) == self.project

    @property
    def admin(self) -> bool:
        return self.role is Role.admin


# The caller of the explicit open mode (IFCFLOW_ALLOW_ANONYMOUS without keys): what it was before.
ANONYMOUS = Caller(key_id="anonymous", project=DEFAULT_PROJECT, role=Role.admin)


def digest(key: str) -> bytes:
    """How a key is held at rest and compared."""
    return hashlib.sha256(key.encode()).digest()


def key_id_of(key_digest: bytes) -> str:
    """A key's public name: a short prefix of its hash (says nothing usable about the key)."""
    return "key_" + key_digest.hex()[:12]


def new_key() -> str:
    """A fresh random key (shown once, when it is made)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def check_project(name: str) -> str:
    """``name`` if it is a valid project name, else ``ValueError`` saying what one is."""
    if not PROJECT_NAME.match(name):
        raise ValueError(f"project {name!r}: lower-case letters, digits, '_' and '-', at most 63, starting "
                         "with a letter or digit")
    return name


def parse_entry(entry: str) -> tuple[str, Role, str]:
    """``(project, role, key)`` of one ``IFCFLOW_API_KEYS`` entry; a bare key is ``default``'s admin.

    Only ``<project>:<read|submit|admin>:<key>`` with a valid project name is split: a bare key that
    happens to hold colons stays whole."""
    project, sep, rest = entry.partition(":")
    role, sep2, key = rest.partition(":")
    if sep and sep2 and key and role in Role.__members__ and PROJECT_NAME.match(project):
        return project, Role(role), key
    return DEFAULT_PROJECT, Role.admin, entry


@dataclass(frozen=True, slots=True)
class Grant:
    """A key as held: its digest and who it makes the caller."""

    digest: bytes
    caller: Caller


def configured_grants(entries: list[str]) -> list[Grant]:
    """The grants of ``IFCFLOW_API_KEYS`` entries, keys replaced by their digests."""
    grants = []
    for entry in entries:
        project, role, key = parse_entry(entry)
        key_digest = digest(key)
        grants.append(Grant(key_digest, Caller(key_id_of(key_digest), project, role, name="configured")))
    return grants


def match(presented_digest: bytes, grants: list[Grant]) -> Caller | None:
    """The caller of the grant whose digest is ``presented_digest``; every grant is compared, in
    constant time each, whatever matches first."""
    found = None
    for grant in grants:
        if hmac.compare_digest(presented_digest, grant.digest) and found is None:
            found = grant.caller
    return found
