"""What every figure of the book shares: a type size readable at the text column's width, and
figures the book shows more than once."""

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ParamSpec

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.text import Text

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

# The book's text column is at least this wide (px) in a 1400 px browser window; wider figures
# are scaled down to it, narrower ones are shown at their natural size (figure.dpi px per inch).
COLUMN_PX = 700
MIN_TEXT_PX = 9.0
BOOK_STYLE: "dict[RcKeyType, int]" = {
    "font.size": 11,
    "axes.titlesize": 11,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "legend.title_fontsize": 10,
}

P = ParamSpec("P")


def book_figure(draw: Callable[P, Figure]) -> Callable[P, Figure]:
    """Decorate a figure function: its text is drawn in the book's type sizes."""

    @functools.wraps(draw)
    def styled(*args: P.args, **kwargs: P.kwargs) -> Figure:
        # Only the style's own keys are restored: plt.rc_context would also restore
        # rcParams["interactive"], which IPython switches on when the first figure is made, and
        # the figures after it would then not be shown in a notebook.
        before = {key: plt.rcParams[key] for key in BOOK_STYLE}
        plt.rcParams.update(BOOK_STYLE)
        try:
            return draw(*args, **kwargs)
        finally:
            plt.rcParams.update(before)

    return styled


def smallest_text_px(figure: Figure) -> float:
    """Height (px) of the smallest visible text of ``figure`` as the book shows it (drawn first,
    so that tick labels made at drawing time count too)."""
    figure.canvas.draw()
    width_px = figure.get_figwidth() * figure.dpi
    px_per_point = min(COLUMN_PX, width_px) / width_px * figure.dpi / 72
    sizes = [
        text.get_fontproperties().get_size_in_points()  # get_fontsize(), typed as a float
        for text in figure.findobj(Text)
        if text.get_visible() and text.get_text().strip()
    ]
    return min(sizes) * px_per_point


@book_figure
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
        axis.set_title(title)
    figure.tight_layout()
    return figure
