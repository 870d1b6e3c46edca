"""Password hashes in RabbitMQ's format (``rabbit_password_hashing_sha256``): base64 of a 4-byte
random salt followed by SHA-256(salt + password). The same strings appear in RabbitMQ definition
exports, so users move between router and RabbitMQ unchanged. Clear-text passwords are never
stored."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = os.urandom(4) if salt is None else salt
    digest = hashlib.sha256(salt + password.encode("utf-8")).digest()
    return base64.b64encode(salt + digest).decode("ascii")


def check_password(password: str, password_hash: str) -> bool:
    try:
        raw = base64.b64decode(password_hash.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        return False
    if len(raw) != 4 + 32:
        return False
    salt, digest = raw[:4], raw[4:]
    return hmac.compare_digest(hashlib.sha256(salt + password.encode("utf-8")).digest(), digest)
