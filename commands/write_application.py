"""What every write-side application shares: group commit, event counting, orderly close."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import Recording
from eventsourcing.utils import EnvType

from commands.group_commit import GroupCommit
from commands.metrics import GROUP_COMMIT_BATCH, count_appended


class WriteApplication(Application[UUID]):
    """An eventsourcing application whose saves go through one group commit."""

    def __init__(self, env: EnvType | None = None, *, group_commit_max: int = 1) -> None:
        super().__init__(env)
        # Concurrent commands share one transaction of up to this many; 1 saves each alone.
        self.commits: GroupCommit[UUID] = GroupCommit(
            super().save,
            max_batch=group_commit_max,
            batched=GROUP_COMMIT_BATCH.labels(self.name).observe,
        )

    def _notify(self, recordings: list[Recording[UUID]]) -> None:
        count_appended(self.name, recordings)

    def close(self) -> None:
        self.commits.close()
        super().close()
