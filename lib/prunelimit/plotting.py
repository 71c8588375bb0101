"""Figures the book shows more than once."""

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def image_grid(images: np.ndarray, titles: Sequence[str], columns: int = 5) -> Figure:
    """Grey-scale images [K, H, W] in a grid with one title each."""
    images = np.asarray(images)
    if len(images) != len(titles):
        raise ValueError(f"{len(images)} images but {len(titles)} titles")
    rows = -(-len(images) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.8 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, title in zip(axes.flat, images, titles, strict=False):
        axis.imshow(image, cmap="gray_r")
        axis.set_title(title, fontsize=8)
    figure.tight_layout()
    return figure
