"""StreamingCKA.update against the GEMM floor of each batch, and its peak memory: the ``streaming`` case of the suite.

Kept for the commands the docs name; it runs ``python -m benchmarks --case streaming`` with the
other options passed through (``--quick``, ``--device``, ``--out``, ``--threads``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.run import main

if __name__ == "__main__":
    main(["--case", "streaming", "--case", "memory", *sys.argv[1:]])
