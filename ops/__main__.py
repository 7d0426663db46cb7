"""``python -m ops`` is the ``taskledger`` command."""

from ops.cli import app

app(prog_name="taskledger")
