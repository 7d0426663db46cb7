"""Composes the audit side: read-only handles on the write side's stores, and what reads them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ops.bootstrap import APPLICATIONS, event_store_env
from ops.settings import Settings
from projections.log import UpstreamReader
from queries.history.export import EventStoreEventExport
from queries.history.replay import EventStoreTaskHistory, EventStoreUserHistory


class UnknownApplicationError(ValueError):
    pass


def application_named(name: str) -> str:
    """The application's canonical name, matched case-insensitively."""
    for known in APPLICATIONS:
        if known.lower() == name.lower():
            return known
    raise UnknownApplicationError(f"unknown application {name!r}; one of {', '.join(APPLICATIONS)}")


@dataclass
class AuditLogs:
    """One UpstreamReader per upstream application, opened on the same store as the write side."""

    logs: dict[str, UpstreamReader] = field(default_factory=dict)

    def task_history(self) -> EventStoreTaskHistory:
        return EventStoreTaskHistory(self.logs["Tasks"])

    def user_history(self) -> EventStoreUserHistory:
        return EventStoreUserHistory(self.logs["Identity"])

    def export(self, name: str) -> EventStoreEventExport:
        return EventStoreEventExport(self.logs[name])

    def close(self) -> None:
        for log in self.logs.values():
            log.close()

    def __enter__(self) -> AuditLogs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_audit_logs(
    settings: Settings, names: Iterable[str] = tuple(APPLICATIONS), *, pool_size: int = 1
) -> AuditLogs:
    """Readers hold few connections: the library opens a PostgreSQL pool's ``pool_size``
    connections up front, and audit reads are rare; bursts borrow the configured overflow."""
    from ops.schema import require_schema

    if names:
        require_schema(settings)
    env = {**event_store_env(settings), "POSTGRES_POOL_SIZE": str(pool_size)}
    audit = AuditLogs()
    try:
        for name in names:
            audit.logs[name] = UpstreamReader(application_named(name), env)
    except BaseException:
        audit.close()
        raise
    return audit
