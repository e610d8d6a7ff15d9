"""The one exception type bal raises for bad input.

The command line turns a :class:`BalError` into ``bal: error: <message>`` and exit
status 2, so every message must name the file, flag or value that is wrong.
"""


class BalError(Exception):
    """Bad input or an impossible request, with a message a user can act on."""


class DataError(BalError):
    """A dataset folder or image file is missing, corrupt or inconsistent."""
