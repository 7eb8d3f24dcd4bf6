"""``python -m jobs``: the same program as the ``recycler`` command."""

from jobs.launch import main

main()
