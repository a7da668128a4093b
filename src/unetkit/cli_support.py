"""What every command shares: user-caused errors become one sentence and an exit code."""

from __future__ import annotations

import sys

import typer

from unetkit.errors import UnetkitError


def _fail(exc: UnetkitError) -> None:
    print(f"error: {exc}", file=sys.stderr)
    raise typer.Exit(exc.exit_code)


def guarded(fn):
    """Turn user-caused errors into one sentence and an exit code, never a traceback."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UnetkitError as exc:
            _fail(exc)
        except KeyboardInterrupt:
            print("interrupted; files already written are complete.", file=sys.stderr)
            raise typer.Exit(130) from None

    return wrapper
