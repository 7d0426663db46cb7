"""The read side: query routes over read-model ports, and audit queries over the event store."""
