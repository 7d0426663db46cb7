"""Task queries: lists, single tasks and counters, read from the projections."""
