"""``python -m jobs``: the same program as the ``recycler`` command."""

from jobs.cli import main

main()
