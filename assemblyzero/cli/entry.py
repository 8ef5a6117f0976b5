"""The `assemblyzero` command. Imports nothing until it is inside its guard:
Ctrl+C while the tool is still loading exits 130 like any other Ctrl+C."""

from __future__ import annotations

import os
import sys

EXIT_INTERRUPTED = 130  # constants.EXIT_INTERRUPTED, not imported: see above


def main() -> None:
    try:
        from assemblyzero.cli.tasks import program

        program.run()
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:  # `assemblyzero --help | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
