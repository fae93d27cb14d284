"""``python -m vaekit.cli``: the same as the ``vaekit`` command."""

import sys

from vaekit.cli.core import main

if __name__ == "__main__":
    sys.exit(main())
