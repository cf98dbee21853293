"""The error tree: every failure the user can see, each carrying its exit status."""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    """Process exit codes; documented in the README and tested one by one."""

    OK = 0
    ERROR = 1
    USAGE = 2
    CONFIG = 3
    AUTH = 4
    SOURCE_UNAVAILABLE = 5
    BAD_INPUT = 6
    LOCKED = 7
    PARTIAL = 8
    STORE = 9
    MODEL = 10
    INTERRUPTED = 130


class MailauditError(Exception):
    """Base of every error the CLI turns into one line; `status` picks the exit code."""

    status = ExitStatus.ERROR


class ConfigError(MailauditError):
    status = ExitStatus.CONFIG


class AuthError(MailauditError):
    status = ExitStatus.AUTH


class SourceUnavailableError(MailauditError):
    status = ExitStatus.SOURCE_UNAVAILABLE


class ArchiveFormatError(MailauditError):
    status = ExitStatus.BAD_INPUT


class BadInputError(MailauditError):
    status = ExitStatus.BAD_INPUT


class StoreError(MailauditError):
    status = ExitStatus.STORE


class ModelError(MailauditError):
    status = ExitStatus.MODEL


class LockHeldError(MailauditError):
    status = ExitStatus.LOCKED
