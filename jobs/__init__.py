"""recycler's jobs: the database, the lifecycle rules, the nightly run, the outbox and the CLI."""

__version__ = "0.1.0"
