"""The one base of the project's errors: each says in one line what is wrong and what to do, and every
command catches this base once and prints that line (a leaf module: it imports nothing)."""


class ReidError(Exception):
    """An error of reid_tf's whose message is one line naming the file or flag and what to do."""
