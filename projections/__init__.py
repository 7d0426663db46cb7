"""The read side's engine: runner, checkpoints, projectors, read-model adapters, the relay."""
