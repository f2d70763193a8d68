"""cka-sim: exact, fast Centred Kernel Alignment (CKA) and HSIC for NumPy and PyTorch."""

__version__ = "0.1.0"
