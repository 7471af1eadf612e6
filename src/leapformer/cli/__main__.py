"""``python -m leapformer.cli`` (and ``torchrun -m leapformer.cli``)."""

import sys

from leapformer.cli import main

sys.exit(main())
