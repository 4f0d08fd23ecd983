"""The `newsletter` command: a thin shell over the library.

Each module here adds its commands to `main` when imported; `main` imports a command's
module only when that command is asked for (see `root.COMMANDS`).
"""

from newsletter.cli.root import main

__all__ = ["main"]
