"""Errors a user can cause and fix. The CLI prints their message as one line and exits 1."""


class StemstoreError(Exception):
    """A problem with the user's input or store, said in one line: what is wrong and where."""
