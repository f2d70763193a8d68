"""Warnings raised by cka-sim."""


class CKAUndefinedWarning(RuntimeWarning):
    """CKA has no value for these inputs (NaN is returned).

    Raised when a self-HSIC is zero (every feature of a layer is constant, e.g. a dead ReLU
    layer) or, for the debiased estimator, when a self-HSIC estimate is not positive (possible
    with very few examples). The message names the argument or layer.
    """
