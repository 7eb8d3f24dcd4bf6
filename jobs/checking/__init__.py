"""Checks of numbers for banks: the clients of the API, their tokens, the record of checks."""
