"""The book's figure style: text readable at the column's width, rc settings left as found."""

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pytest

from prunelimit.plotting import (
    BOOK_STYLE,
    COLUMN_PX,
    MIN_TEXT_PX,
    book_figure,
    image_grid,
    smallest_text_px,
)


def test_text_size_is_measured_as_the_book_scales_the_figure() -> None:
    wide, ax = plt.subplots(figsize=(14, 3), dpi=100)  # 1,400 px, shown at COLUMN_PX
    ax.set_title("title", fontsize=10)
    ax.set_xticks([0, 1], ["a", "b"], fontsize=20)
    assert smallest_text_px(wide) == pytest.approx(10 * COLUMN_PX / 1400 * 100 / 72)
    narrow, ax = plt.subplots(figsize=(3, 3), dpi=100)  # narrower than the column: 1:1
    ax.set_title("title", fontsize=8)
    ax.set_xticks([0], ["a"], fontsize=20)
    ax.set_yticks([0], ["b"], fontsize=20)
    assert smallest_text_px(narrow) == pytest.approx(8 * 100 / 72)
    plt.close("all")


def test_book_figures_use_the_style_and_restore_only_its_keys() -> None:
    before = {key: mpl.rcParams[key] for key in BOOK_STYLE}
    interactive = mpl.rcParams["interactive"]

    @book_figure
    def draw() -> plt.Figure:
        mpl.rcParams["interactive"] = not interactive  # as IPython does on a first figure
        figure, ax = plt.subplots()
        ax.set_title("t")
        assert mpl.rcParams["font.size"] == BOOK_STYLE["font.size"]
        return figure

    figure = draw()
    assert figure.axes[0].title.get_fontsize() == BOOK_STYLE["axes.titlesize"]
    assert {key: mpl.rcParams[key] for key in BOOK_STYLE} == before
    assert mpl.rcParams["interactive"] == (not interactive), "interactive is not reset"
    mpl.rcParams["interactive"] = interactive
    plt.close("all")


def test_an_image_grid_is_readable_and_needs_a_title_per_image() -> None:
    figure = image_grid(np.zeros((10, 4, 4)), [f"class {i}" for i in range(10)])
    assert smallest_text_px(figure) >= MIN_TEXT_PX
    with pytest.raises(ValueError, match="10 images but 2 titles"):
        image_grid(np.zeros((10, 4, 4)), ["a", "b"])
    plt.close("all")
