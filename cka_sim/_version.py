"""The version of cka-sim, in one place (read by the package, its results and the build)."""

__version__ = "0.1.0"
