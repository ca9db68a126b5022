"""Figures of the reference models: impulse and frequency responses, poles, a comparison of
discretizations, and the frozen systems of the selective (LTV) models.

As functions (each returns ``(fig, plotted)``: a matplotlib figure and the arrays it drew)::

    from figures import make_model, plot_frequency_response
    fig, plotted = plot_frequency_response([make_model("s4d", "zoh"), make_model("s4d", "bilinear")])
    fig.savefig("s4d.png")

and on the command line (``figures.cli``)::

    python -m figures impulse|frequency|poles|compare|async --model s4d --discretization zoh bilinear --out f.png
    python -m figures gallery        # regenerates figures/gallery/*.png

The plot functions build ``matplotlib.figure.Figure`` objects directly, without pyplot: no global state, no
window, and ``fig.savefig`` renders with Agg; ``python -m figures`` also selects the Agg backend. Importing
this package leaves the caller's matplotlib backend alone.
"""

from figures.cli import GALLERY_DIR, default_gallery_dir, gallery_figures, main, write_gallery
from figures.plots import (
    LTI_MODELS,
    LTV_MODELS,
    MODELS,
    Plotted,
    default_gaps,
    default_input,
    make_model,
    plot_async_example,
    plot_discretization_comparison,
    plot_frequency_response,
    plot_frozen_responses,
    plot_impulse_response,
    plot_irregular_sampling,
    plot_poles,
    poles,
    set_step,
)

__all__ = [
    "GALLERY_DIR",
    "LTI_MODELS",
    "LTV_MODELS",
    "MODELS",
    "Plotted",
    "default_gallery_dir",
    "default_gaps",
    "default_input",
    "gallery_figures",
    "main",
    "make_model",
    "plot_async_example",
    "plot_discretization_comparison",
    "plot_frequency_response",
    "plot_frozen_responses",
    "plot_impulse_response",
    "plot_irregular_sampling",
    "plot_poles",
    "poles",
    "set_step",
    "write_gallery",
]
