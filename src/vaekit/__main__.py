"""``python -m vaekit``: the same as the ``vaekit`` command."""

import sys

from vaekit.cli import main

if __name__ == "__main__":
    sys.exit(main())
