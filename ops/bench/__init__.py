"""On-demand benchmarks (``python -m ops.bench.NAME``); each prints its figures beside a baseline
measured in the same run. Never part of the test suite."""
