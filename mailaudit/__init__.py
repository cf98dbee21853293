"""mailaudit: audit the give and take of a mailbox's professional relationships."""

__version__ = "0.1.0"
