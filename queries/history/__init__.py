"""Audit queries answered from the event store itself, never from a projection.

A task's history and its state at an instant, a user's account history, and whole-log
exports. Events are the record: what these return is what the store holds, decoded.
"""
