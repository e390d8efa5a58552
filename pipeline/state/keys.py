"""Compact binary keys for fingerprints and task UUIDs (half the bytes of their text, in every index).

    key = FINGERPRINT.pack("5be1...")      # 32 bytes for a sha256 hex digest
    FINGERPRINT.unpack(key)                # "5be1..."
    TASK.pack("d952bcb7-6470-54dd-a8cf-6abf2e2e352c")   # 16 bytes

A value in the canonical form (lowercase hex digest, lowercase hyphenated UUID) packs to its raw bytes,
exactly ``size`` long. Any other text (a test's "fp-1", an upper-case UUID) packs to ``0xFF`` + its UTF-8,
never ``size`` long (one more ``0xFF`` when it would be), so packing is one-to-one and reversible: no
0.1 value is ever refused or confused with another.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["FINGERPRINT", "TASK", "KeyCodec"]

_TAG = b"\xff"  # never a byte of UTF-8


@dataclass(frozen=True, slots=True)
class KeyCodec:
    """Packs text keys whose canonical form is ``size`` raw bytes."""

    size: int
    canonical: re.Pattern[str]
    hyphens: tuple[int, ...] = ()  # where a UUID's text has "-"

    def pack(self, text: str) -> bytes:
        """The stored key of ``text``."""
        if self.canonical.fullmatch(text):
            return bytes.fromhex(text.replace("-", "") if self.hyphens else text)
        packed = _TAG + text.encode()
        return packed + _TAG if len(packed) == self.size else packed

    def unpack(self, key: bytes) -> str:
        """The text ``key`` was packed from."""
        key = bytes(key)
        if len(key) == self.size:
            digits = key.hex()
            for at in self.hyphens:
                digits = f"{digits[:at]}-{digits[at:]}"
            return digits
        body = key[1:-1] if len(key) == self.size + 1 and key.endswith(_TAG) else key[1:]
        return body.decode()


FINGERPRINT = KeyCodec(32, re.compile(r"[0-9a-f]{64}"))
TASK = KeyCodec(
    16, re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), hyphens=(8, 13, 18, 23)
)
