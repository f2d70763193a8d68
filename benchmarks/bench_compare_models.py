"""compare_models against pytorch-cka's compute_cka: the ``compare_models`` case of the suite.

Kept for the commands the docs name; it runs ``python -m benchmarks --case compare_models`` with the
other options passed through (``--quick``, ``--device``, ``--out``, ``--threads``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.run import main

if __name__ == "__main__":
    main(["--case", "compare_models", *sys.argv[1:]])
