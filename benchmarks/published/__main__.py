"""``python -m benchmarks.published``: the field's published CKA checks (``--help``)."""

from benchmarks.published.run import main

main()
