"""Per-user task counters in Redis for ``GET /v1/tasks/stats``."""
