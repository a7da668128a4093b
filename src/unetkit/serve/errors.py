"""Errors the studio answers with a status code; app.py turns each into {"detail": sentence}.

They are UnetkitErrors, so the state and data modules raise them without knowing HTTP;
any other UnetkitError (bad data, bad upload) is a 400.
"""

from __future__ import annotations

from unetkit.errors import UnetkitError


class ApiError(UnetkitError):
    """A user-caused problem with its HTTP status."""

    status = 400


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    """The request does not fit the studio's state (no model yet, a job already running)."""

    status = 409


class TooLarge(ApiError):
    status = 413


class WrongMedia(ApiError):
    status = 415


class Busy(ApiError):
    """The prediction queue is full; the client may retry (429: a 4xx, like every error)."""

    status = 429
