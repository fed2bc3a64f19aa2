"""Errors of the readers: a bad file, and a missing optional package."""

from __future__ import annotations

__all__ = ["CutShortError", "DamagedFileError", "FormatError", "MissingExtraError", "brief",
           "require"]


class FormatError(ValueError):
    """A file that cannot be read as points; the message names the file, in our words."""


class DamagedFileError(FormatError):
    """A file damaged part-way (cut short, corrupted): raised after every complete message
    before the damage has been yielded.

    Attributes
    ----------
    messages_read : int
        Messages of the chosen topic read (and yielded) before the damage; for a point file
        cut short, 1 when its rows before the cut were yielded as its cloud, else 0.
    where : str
        Where the file is damaged, in words (``"after byte 123456 of 130000"``).
    """

    def __init__(self, message: str, *, messages_read: int, where: str) -> None:
        super().__init__(message)
        self.messages_read = messages_read
        self.where = where


class CutShortError(DamagedFileError):
    """A point file (one cloud, not a bag) cut short, raised by its reader with what was read
    before the cut; :func:`~streamgmm.formats.iter_clouds` yields those rows as the file's
    cloud, then raises a :class:`DamagedFileError`, as a bag's reader does after its last
    complete message.

    Attributes
    ----------
    columns : dict of str to numpy.ndarray, or None
        The file's columns, complete rows before the cut; None when none can be read.
    """

    def __init__(self, message: str, *, columns: dict | None, where: str) -> None:
        super().__init__(message, messages_read=0, where=where)
        self.columns = columns


class MissingExtraError(ImportError):
    """An optional package a reader needs is not installed; the message names the extra."""


def require(module: str, what: str, package: str, extra: str):  # noqa: ANN201 - a module
    """Import `module`, or raise MissingExtraError naming `package` and the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"{what} needs {package}: pip install 'streamgmm[{extra}]'"
        ) from None


def brief(exc: BaseException) -> str:
    """A library's exception as a short clause: its type when the text says nothing."""
    text = " ".join(str(exc).split())
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
