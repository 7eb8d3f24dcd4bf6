"""recycler's notifier: messages, templates, segment counting and gateways.

A leaf package: it knows nothing of the database or of ``jobs``.
"""
