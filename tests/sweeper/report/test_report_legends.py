"""Legends name only what is drawn; captions read as sentences (issue 27)."""

import pandas as pd

from sweeper.report.build import _curves_section
from sweeper.report.figures import pareto_figure


def _legend_labels(fig) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def _trials(accuracies: dict[int, list[float]]) -> pd.DataFrame:
    rows = [{"trial_id": f"{res}-{seed}", "status": "finished", "resolution": res, "seed": seed, "knn_top1": acc,
             "knn_val_top1": acc, "train_pflops": (res / 14) ** 2, "test_size": 2000}
            for res, accs in accuracies.items() for seed, acc in enumerate(accs)]
    return pd.DataFrame(rows)


def test_a_pareto_legend_lists_dominated_configurations_and_single_trials_only_when_drawn():
    one_seed_front = pareto_figure(_trials({14: [0.79], 8: [0.74]}), ["resolution"], "knn_top1", ["train_pflops"], "resolution")
    labels = _legend_labels(one_seed_front)
    assert "dominated configuration" not in labels and "single trial" not in labels  # each trial is its configuration, all on the front
    three_seeds = pareto_figure(_trials({14: [0.79, 0.78, 0.80], 10: [0.70, 0.71, 0.69], 8: [0.74, 0.75, 0.73]}),
                                ["resolution"], "knn_top1", ["train_pflops"], "resolution")
    labels = _legend_labels(three_seeds)
    assert "dominated configuration" in labels and "single trial" in labels  # 10 px costs more than 8 px and scores less


def test_a_learning_curve_caption_never_counts_zero_of_zero_trials():
    trials = _trials({14: [0.79], 8: [0.74]})
    epochs = pd.DataFrame([{"trial_id": tid, "epoch": e, "step": e, "resolution": 14, "loss": 1.0, "lr": 0.1,
                            "knn_val_top1": 0.7, "train_pflops_cum": 0.1 * e, "wall_s_cum": e, "img_per_s": 1.0}
                           for tid in trials["trial_id"] for e in (1, 2)])
    seen = {}
    _curves_section(trials, epochs, pd.Series([True, True]), ["resolution"], lambda name, fig, alt, caption="": seen.setdefault("caption", caption))
    assert "Coloured: 2 trials of the Pareto set." in seen["caption"] and "0 of the other 0" not in seen["caption"]
