"""``python -m pixeldance.cli``: the ``pixeldance`` command (as torchrun and the tests run it)."""

import sys

from . import main

sys.exit(main())
