"""Sending: the outbox statements, the dispatcher, and the choice of gateway."""
