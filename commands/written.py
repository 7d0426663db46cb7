"""What a successful command returns: the aggregate, its new version, its log position."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from eventsourcing.persistence import Recording


@dataclass(frozen=True, slots=True)
class Written:
    id: UUID
    version: int
    # Place of the write in its application's notification log; None when nothing changed.
    position: int | None

    @classmethod
    def of(cls, aggregate_id: UUID, version: int, recordings: Sequence[Recording[UUID]]) -> Written:
        positions = [
            r.notification.id for r in recordings if r.domain_event.originator_id == aggregate_id
        ]
        return cls(aggregate_id, version, max(positions) if positions else None)
