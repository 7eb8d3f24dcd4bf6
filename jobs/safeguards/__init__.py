"""The ownership safeguards: holds, the resale pool, transfers, reinstatements, and the
reassigned-number check."""
