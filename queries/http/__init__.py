"""HTTP query routes. Dependencies come from ``app.state``, set by the composition root."""
