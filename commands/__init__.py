"""The write side: applications over the event store, command handlers, auth, HTTP command routes."""
