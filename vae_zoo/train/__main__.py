"""``python -m vae_zoo.train``: train one model from the command line."""

import sys

from .cli import main

sys.exit(main())
