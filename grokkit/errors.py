"""Errors that the CLI turns into one clear line and exit code 2."""

from __future__ import annotations


class GrokkitError(Exception):
    """A problem the user can fix; its message says what is wrong and what would be right."""

    exit_code = 1


class UsageError(GrokkitError):
    """Bad input at the boundary (an option, a path, a run directory)."""

    exit_code = 2

    def __init__(self, message: str, option: str | None = None):
        super().__init__(f"{option}: {message}" if option else message)
        self.option = option


class StorageError(GrokkitError):
    """A file of the run could not be written (full disk, read-only folder, file-size limit)."""

    exit_code = 1


class TrainingDiverged(GrokkitError):
    """The loss or the parameters became NaN/Inf; the last good checkpoint is kept."""

    exit_code = 3
