"""The one exception users see: a message that names the problem and the fix."""


class WmcliError(Exception):
    """An expected failure (bad input, missing file, corrupt store). The CLI prints it as one
    line on stderr and exits with `exit_code` (1 unless stated)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code
