"""API tokens with roles, read from a secrets file or the environment.

Roles: ``pos`` (the point-of-sale system: receipts), ``operator`` (staff: read everything, settle
the review queue), ``admin`` (everything, and the store's settings). A route names the permission
it needs (:data:`PERMISSIONS`); a token without it gets 403, a missing or wrong one 401.

Tokens are kept only as SHA-256 digests and compared in constant time (``hmac.compare_digest``
against every known digest, so the time does not tell which token came close). A client that keeps
failing is slowed down: after ``free_failures`` wrong tokens in ``window_s`` each further answer waits
twice as long as the last, up to ``max_delay_s`` (:class:`Throttle`).

A secrets file (YAML, readable by its owner only)::

    tokens:
      - {name: till-1, role: pos, token_env: STORETWIN_TOKEN_TILL}      # the token in a variable
      - {name: ana, role: operator, sha256: 9f86d08...}                  # or its digest
      - {name: ops, role: admin, token: "long random string"}            # or itself

or ``STORETWIN_TOKENS="name:role:token,name:role:token"`` in the environment.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import stat
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

from runtime.store import SpecError, read_yaml

ROLES = ("pos", "operator", "admin")
PERMISSIONS = {"pos": {"receipts"}, "operator": {"receipts", "read", "review"},
               "admin": {"receipts", "read", "review", "admin"}}
MIN_TOKEN_CHARS = 16


@dataclass(frozen=True)
class Principal:
    name: str
    role: str

    def may(self, permission: str) -> bool:
        return permission in PERMISSIONS[self.role]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Tokens:
    """The known tokens (digests only) and who each belongs to."""

    def __init__(self, entries: list[tuple[str, str, bytes]]):
        if not entries:
            raise ValueError("no API tokens: give a secrets file (tokens=<file>) or STORETWIN_TOKENS=name:role:token")
        self._entries = entries

    def check(self, token: str | None) -> Principal | None:
        """Who ``token`` belongs to, or None; the same work whatever it is."""
        d = _digest(token or "")
        found = None
        for name, role, digest in self._entries:
            if hmac.compare_digest(d, digest) and found is None:
                found = Principal(name, role)
        return found

    @classmethod
    def from_env(cls, var: str = "STORETWIN_TOKENS", environ=os.environ) -> "Tokens":
        text = environ.get(var, "").strip()
        entries = []
        for i, item in enumerate(filter(None, (x.strip() for x in text.split(",")))):
            parts = item.split(":", 2)
            if len(parts) != 3:
                raise ValueError(f"{var}: entry {i + 1}: expected name:role:token")
            entries.append(_entry(var, f"entry {i + 1}", parts[0], parts[1], parts[2]))
        return cls(entries)

    @classmethod
    def from_file(cls, path: str | Path, environ=os.environ) -> "Tokens":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such secrets file")
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO) and "token:" in path.read_text():
            raise SpecError(path, "<file>", "readable by its owner only (chmod 600): it holds tokens")
        data = read_yaml(path)
        items = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(items, list) or not items:
            raise SpecError(path, "tokens", "a list of {name, role, token | token_env | sha256}", items)
        entries = []
        for i, it in enumerate(items):
            where = f"tokens[{i}]"
            if not isinstance(it, dict) or set(it) - {"name", "role", "token", "token_env", "sha256"}:
                raise SpecError(path, where, "a mapping with name, role and one of token, token_env, sha256", it)
            given = [k for k in ("token", "token_env", "sha256") if k in it]
            if len(given) != 1:
                raise SpecError(path, where, "exactly one of token, token_env, sha256", ", ".join(given) or "none")
            name, role = str(it.get("name", "")), str(it.get("role", ""))
            if "sha256" in it:
                h = str(it["sha256"]).lower()
                if len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
                    raise SpecError(path, f"{where}.sha256", "64 hex digits (sha256sum of the token)", it["sha256"])
                if role not in ROLES or not name:
                    raise SpecError(path, f"{where}.role", "a name and one of " + ", ".join(ROLES), role)
                entries.append((name, role, bytes.fromhex(h)))
                continue
            token = it["token"] if "token" in it else environ.get(str(it["token_env"]), "")
            try:
                entries.append(_entry(str(path), where, name, role, str(token)))
            except ValueError as e:
                raise SpecError(path, where, str(e).split(": ", 2)[-1]) from None
        return cls(entries)


def _entry(source: str, where: str, name: str, role: str, token: str) -> tuple[str, str, bytes]:
    if not name:
        raise ValueError(f"{source}: {where}: expected a name")
    if role not in ROLES:
        raise ValueError(f"{source}: {where}: expected a role among {', '.join(ROLES)}, got {role!r}")
    if len(token) < MIN_TOKEN_CHARS:
        raise ValueError(f"{source}: {where}: expected a token of at least {MIN_TOKEN_CHARS} characters")
    return name, role, _digest(token)


class Throttle:
    """Slows down a client (by address) that keeps sending wrong tokens."""

    def __init__(self, free_failures: int = 3, window_s: float = 60.0, first_delay_s: float = 0.25,
                 max_delay_s: float = 5.0, clock=time.monotonic):
        self.free, self.window_s, self.first_s, self.max_s, self.clock = free_failures, window_s, first_delay_s, max_delay_s, clock
        self._fails: dict[str, deque] = defaultdict(deque)

    def failed(self, client: str) -> float:
        """Count one failure; how long to wait before answering it."""
        now = self.clock()
        q = self._fails[client]
        q.append(now)
        while q and q[0] < now - self.window_s:
            q.popleft()
        over = len(q) - self.free
        return 0.0 if over <= 0 else min(self.max_s, self.first_s * 2 ** (over - 1))

    def succeeded(self, client: str) -> None:
        self._fails.pop(client, None)
