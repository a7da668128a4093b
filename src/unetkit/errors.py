"""Errors a user can cause. The CLI turns these into one sentence and an exit code."""

from __future__ import annotations


class UnetkitError(Exception):
    """A problem with the user's data or files (exit code 1)."""

    exit_code = 1


class UsageError(UnetkitError):
    """A problem with how a command or flag was used (exit code 2)."""

    exit_code = 2
