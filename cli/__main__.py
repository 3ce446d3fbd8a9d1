"""``python -m cli …`` is ``kai-messaging …``."""

import sys

from cli.main import main

sys.exit(main())
