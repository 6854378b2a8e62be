"""The API key check shared by the HTTP routes and the live WebSocket."""

from __future__ import annotations

import hmac


def bearer_key(header: str) -> str:
    """The key of an ``Authorization: Bearer KEY`` header ("" when there is none)."""
    scheme, _, key = header.partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


def key_problem(given: str, key: str, how: str) -> tuple[str, str] | None:
    """``(code, message)`` when ``given`` is not the server's ``key`` (None when it is);
    ``how``: how a client sends it, for the message."""
    if not given:
        return "missing_api_key", f"you did not provide an API key: send it as {how}"
    if not hmac.compare_digest(given.encode(), key.encode()):
        return "invalid_api_key", "incorrect API key provided"
    return None


__all__ = ["bearer_key", "key_problem"]
