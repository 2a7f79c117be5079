"""The bounds of one retrieve (what the temporary receiver takes), in a module of their own: the
retrieve options are validated with them before the receiver's module is loaded."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """What one retrieve may deliver: objects (C-STORE requests) and bytes, per object and in all."""

    max_objects: int | None = None
    max_object_bytes: int = 512 * MIB
    max_total_bytes: int = 4096 * MIB

    @staticmethod
    def objects_for(expected: int | None, unknown: int = 1000) -> int:
        """The object bound for ``expected`` instances: twice as many, or 20 more, whichever is larger."""
        if expected is None:
            return unknown
        return max(expected * 2, expected + 20)
