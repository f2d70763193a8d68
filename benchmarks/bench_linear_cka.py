"""linear_cka against the GEMM floor and the peers: the ``linear`` case of the suite.

Kept for the commands the docs name; it runs ``python -m benchmarks --case linear`` with the
other options passed through (``--quick``, ``--device``, ``--out``, ``--threads``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.run import main

if __name__ == "__main__":
    main(["--case", "linear", *sys.argv[1:]])
