"""``python -m benchmarks``: run the suite (options: ``--help``)."""

from benchmarks.run import main

main()
