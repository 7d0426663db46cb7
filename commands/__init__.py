"""The write side: applications over the event store, handlers, auth and HTTP command routes."""
