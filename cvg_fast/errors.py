"""One exception type for mistakes a user can make.

A `CvgError` carries a one-line message that says what is wrong and what to do.
The `cvg` command and `train/level.py` print it as `error: <message>` and exit 2,
with no traceback; anything else is a bug and keeps its traceback.
"""


class CvgError(Exception):
    """A user-facing error: bad input, missing data, missing lower levels..."""
