"""Errors that carry their own message.

``ProtocolError`` is raised by the sans-I/O control plane when the peer broke
the protocol (or was refused); its text becomes the DISCONNECT reason.
``MemifError`` is what the public API raises for local misuse or system errors;
each has a stable ``code`` (libmemif's ``MEMIF_ERR_*`` name where one exists).
"""

from __future__ import annotations


class MemifError(Exception):
    """Base of every error this package raises; ``code`` names the condition."""

    code = "MEMIF_ERR_GENERAL"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        """The human-readable text."""
        return str(self.args[0]) if self.args else ""


class ProtocolError(MemifError):
    """The peer sent something we refuse; the text is the DISCONNECT reason."""

    code = "MEMIF_ERR_PROTO"


class UnsealedRegionError(ProtocolError):
    """A peer's region could not be sealed against shrinking and the peer is not trusted."""


class ConfigError(MemifError, ValueError):
    """A local argument is out of range; the text says what is accepted."""

    code = "MEMIF_ERR_INVAL_ARG"


class NotConnectedError(MemifError):
    """The operation needs a connected interface."""

    code = "MEMIF_ERR_NOCONN"


class SocketPathError(MemifError, OSError):
    """A system call on a socket path failed (bind, chmod, chown).

    Also an :class:`OSError`: ``errno``, ``strerror`` and ``filename`` (the path) are
    the system's; the text names the operation and the path.
    """

    code = "MEMIF_ERR_SYSCALL"

    def __init__(self, operation: str, path: str, cause: OSError) -> None:
        OSError.__init__(self, cause.errno, cause.strerror, path)
        self.operation = operation

    def __str__(self) -> str:
        return f"{self.operation} {self.filename}: {self.strerror}"

    @property
    def message(self) -> str:
        """The human-readable text."""
        return str(self)


class SocketInUseError(MemifError):
    """Another process is already listening on the socket."""

    code = "MEMIF_ERR_SYSCALL"
