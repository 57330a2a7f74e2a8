"""One exception type for mistakes a user can make.

A `CvgError` carries a one-line message that says what is wrong and what to do.
The `cvg` command and `train/level.py` print it as `error: <message>` and exit 2,
with no traceback; anything else is a bug and keeps its traceback.
"""


class CvgError(Exception):
    """A user-facing error: bad input, missing data, missing lower levels..."""


def run_main(main, argv=None) -> int:
    """Run a CLI main; a CvgError becomes `error: <message>` on stderr and exit code 2."""
    import sys
    import warnings

    # a warning a user should act on reads as one line, not as a source excerpt
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"
    try:
        return main(argv) or 0
    except CvgError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"\n{e}" if str(e) else "\ninterrupted", file=sys.stderr)
        return 130
