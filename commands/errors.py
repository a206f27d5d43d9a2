"""The one error type every command raises for what the user can fix, and the exit codes."""

from __future__ import annotations

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """Anything the user can fix (a bad flag, a missing file, a refused key): `cli.main` prints it as
    one line, with credentials in URLs hidden, and exits 2."""
