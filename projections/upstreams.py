"""The write side's applications and the Identity topics projections read, spelled once.

Projections may not import commands, so the names are repeated here; they must equal
``commands.tasks.Tasks.name`` and ``commands.identity.Identity.name`` (the logs' table names).
"""

from __future__ import annotations

TASKS = "Tasks"
IDENTITY = "Identity"

REGISTERED = "domain.identity:User.Registered"
RENAMED = "domain.identity:User.Renamed"
RESET_REQUESTED = "domain.identity:User.PasswordResetRequested"
