"""The theory's one pruning function f_R and the two readings of negative curvature.

f_R(lambda) = lambda R^2 / (lambda R^2 + 2 eps): the share of the eigendirection with curvature
lambda that a distance R from w* cannot keep within the loss tolerance eps. With
``scale = R^2 / (2 eps)`` it is ``scale lambda / (scale lambda + 1)``; the predicted limit is the
root of k / D = (1/D) sum_i f_{R(k)}(lambda_i).
"""

from typing import Literal

import numpy as np

NegativeCurvature = Literal["abs", "flat"]


def curvature_magnitudes(eigenvalues: np.ndarray, negative: NegativeCurvature) -> np.ndarray:
    """The curvatures the theory uses: |lambda| ("abs", the authors' code) or max(lambda, 0)
    ("flat": negative curvature counted as flat) [same shape as ``eigenvalues``]."""
    eigenvalues = np.asarray(eigenvalues, dtype=np.float64)
    if negative == "abs":
        return np.abs(eigenvalues)
    if negative == "flat":
        return np.maximum(eigenvalues, 0.0)
    raise ValueError(f"negative must be 'abs' or 'flat', got {negative!r}")


def pruning_function(curvatures: np.ndarray, scale: float | np.ndarray) -> np.ndarray:
    """f_R at non-negative ``curvatures`` with ``scale = R^2 / (2 eps)`` (broadcast together)."""
    product = np.asarray(curvatures, dtype=np.float64) * scale
    return product / (product + 1.0)
