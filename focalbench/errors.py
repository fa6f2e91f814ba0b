"""The one exception type a user is meant to see.

A :class:`FocalbenchError` carries a one-line message that says what is wrong and which command
or flag fixes it. The CLI prints it without a traceback and exits with status 2; any other
exception is a programming error and keeps its traceback.
"""


class FocalbenchError(Exception):
    """A mistake in the user's input or environment, stated in one actionable line."""
