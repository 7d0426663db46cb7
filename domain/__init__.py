"""The taskledger domain: aggregates, their events and value objects. Pure: no I/O."""
