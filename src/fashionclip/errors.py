"""Exceptions that carry a message meant for a person, not a stack trace."""

from __future__ import annotations


class FashionCLIPError(Exception):
    """Base class: a problem the user can fix (bad input, missing model, wrong catalog).

    The CLI prints the message and exits with status 2 instead of showing a traceback.
    """


class ModelNotFoundError(FashionCLIPError):
    """The model id or folder cannot be loaded (not on disk, hub unreachable, not cached)."""


class UnsafeCheckpointError(FashionCLIPError):
    """A pickle checkpoint was found and the caller did not opt in to unpickling it."""


class ImageDecodeError(FashionCLIPError):
    """An image could not be read: missing, empty, truncated, corrupt, not an image, or a bomb."""


class ModelMismatchError(FashionCLIPError):
    """A catalog is opened with a model other than the one that embedded it."""


class InvalidQueryError(FashionCLIPError):
    """Empty query, unknown filter column, k <= 0 and the like."""
