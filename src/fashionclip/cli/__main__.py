"""``python -m fashionclip.cli``."""

import sys

from fashionclip.cli import main

sys.exit(main())
