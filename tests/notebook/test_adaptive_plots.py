"""Notebook 05's plots: nothing drawn falls outside the axes, and the calibration chart shows cost."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from anee_lite.adaptive.calibration import CurvePoint
from anee_lite.notebook import adaptive_exit as adaptive_plots


def point(cost, agreement):
    return CurvePoint(threshold=0.5, agreement=agreement, cost_fraction=cost, mean_layers_fraction=cost)


def test_pareto_keeps_dear_points_inside_and_labels_every_curve():
    curves = {"cheap": [point(0.3, 0.4), point(0.8, 0.9)], "dear": [point(1.9, 0.95), point(2.3, 1.0)]}
    ax = adaptive_plots.plot_pareto(curves, title="t")
    assert ax.get_xlim()[1] >= 2.3
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"cheap", "dear"} <= set(labels)
    plt.close("all")


def test_calibration_chart_shows_cost_beside_agreement():
    rows = [{"label": "learned", "calibration": 0.9, "in_domain": 0.75, "in_domain_cost": 0.91,
             "out_of_domain": 0.8, "out_of_domain_cost": 0.94}]
    agree, cost = adaptive_plots.plot_calibration(rows, 0.8)
    heights = sorted(round(b.get_height(), 2) for b in cost.patches if b.get_height() == b.get_height())
    assert 0.91 in heights and 0.94 in heights
    assert sorted(round(b.get_height(), 2) for b in agree.patches) == [0.75, 0.8, 0.9]
    plt.close("all")
