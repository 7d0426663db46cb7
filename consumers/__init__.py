"""Broker consumers: the mailer (FastStream) and what it needs to send mail exactly once."""
