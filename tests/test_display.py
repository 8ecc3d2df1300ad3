"""How the book prints numbers: estimates with intervals, display tables, the front
page's headline table and sentences (tdml_lib.reference display helpers), and the
figure helpers of tdml_lib.plotting."""
import json
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

from tdml_lib import findings, plotting, reference


def test_format_estimate_rounds_and_brackets_the_interval():
    assert reference.format_estimate(49.0, (39.422, 58.652)) == "49 [39, 59]"
    assert reference.format_estimate(0.0, (3.4e-16, 3.7)) == "0 [0, 4]"
    assert reference.format_estimate(-1e-17, (-1e-16, 2.0)) == "0 [0, 2]"   # no "-0"
    assert reference.format_estimate(0.5612, None, digits=2) == "0.56"
    assert reference.format_estimate(float("nan"), (1, 2)) == reference.NOT_RUN
    assert reference.format_estimate(None, missing="—") == "—"
    with pytest.raises(ValueError, match="two numbers"):
        reference.format_estimate(5.0, (1.0,))
    with pytest.raises(ValueError, match="digits"):
        reference.format_estimate(5.0, digits=-1)


def test_for_display_merges_intervals_and_keeps_missing_cells_visible():
    df = pd.DataFrame({"cell": ["a", "b"], "best": [66.666667, np.nan],
                       "best_ci": [(55.1, 77.9), np.nan], "top3": [90.04, 12.0]})
    shown = reference.for_display(df, intervals={"best": "best_ci"}, digits=0)
    assert list(shown.columns) == ["cell", "best", "top3"]
    assert shown["best"].tolist() == ["67 [55, 78]", reference.NOT_RUN]
    assert shown["top3"].tolist() == [90.0, 12.0]
    with pytest.raises(ValueError, match="not in the table"):
        reference.for_display(df, intervals={"best": "top3_ci"})


def _write(root, name, metrics, status="ok"):
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps({"status": status, "metrics": metrics}))


def _cell(train, regime, test, best, top3, **extra):
    return {"train": train, "regime": regime, "test": test, "best": best, "top3": top3, **extra}


def test_headline_table_sets_ours_beside_every_poster_cell(tmp_path):
    _write(tmp_path, "transfer", {"table": [
        _cell("numbers", "standard", "numbers", 49.0, 92.0, best_ci=[39.42, 58.65], n_problems=100),
        _cell("numbers", "standard + adversarial", "numbers", 1.0, 2.0)]})
    table = reference.headline_table(reference.load_results(tmp_path), "strict")   # no protocol: strict
    assert len(table) == len(reference.POSTER_TABLE)
    first = table.iloc[0].to_dict()
    assert first == {"trained on": "Numbers", "regime": "standard", "tested on": "Numbers",
                     "Best: poster": "78.3", "Best: ours": "49 [39, 59]",
                     "Top 3: poster": "92.5", "Top 3: ours": "92"}
    assert (table["Best: ours"] == reference.NOT_RUN).sum() == len(table) - 1
    empty = reference.headline_table({}, "strict")
    assert (empty["Top 3: ours"] == reference.NOT_RUN).all()
    assert (reference.headline_table(reference.load_results(tmp_path), "standard")["Best: ours"]
            == reference.NOT_RUN).all()                              # the other protocol: not run
    with pytest.raises(ValueError, match="unknown feature protocol"):
        reference.headline_table({}, "pixels")


def test_poster_cells_name_the_better_protocol(tmp_path):
    """Each cell names the protocol whose Best it reports; a tie goes to the first of
    ``reference.PROTOCOLS``, and a cell with no row names none."""
    first, second = reference.PROTOCOLS
    p, q, r = reference.POSTER_TABLE[:3]
    rows = [_cell(p["train"], p["regime"], p["test"], 40.0, 90.0, protocol=first),
            _cell(p["train"], p["regime"], p["test"], 60.0, 90.0, protocol=second),
            _cell(q["train"], q["regime"], q["test"], 50.0, 90.0, protocol=first),
            _cell(q["train"], q["regime"], q["test"], 50.0, 90.0, protocol=second),
            _cell(r["train"], r["regime"], r["test"], 30.0, 90.0, protocol=second)]
    for row in rows:
        row["scorer"] = "critic"
    _write(tmp_path, "transfer", {"table": rows})
    cells = reference.poster_cells(reference.load_results(tmp_path))
    assert cells["better protocol"].tolist()[:3] == [second, first, second]
    assert cells["ours (better protocol)"].tolist()[:3] == [60.0, 50.0, 30.0]
    assert cells["ours (better protocol)"].iloc[3:].isna().all()
    assert cells["better protocol"].iloc[3:].isna().all()


def test_headline_findings_follow_the_numbers(tmp_path):
    """The sentences are computed: the verdicts flip when the numbers do."""
    low = [_cell(p["train"], p["regime"], p["test"], p["best"] - 30, p["top3"] - 5, protocol="standard")
           for p in reference.POSTER_TABLE]
    _write(tmp_path / "a", "transfer", {"table": low})
    _write(tmp_path / "a", "clustering", {"clustering": [
        {"dataset": "numbers", "method": "agent", "acc": 0.6}, {"dataset": "numbers", "method": "kmeans", "acc": 0.5},
        {"dataset": "fashion", "method": "agent", "acc": 0.4}, {"dataset": "fashion", "method": "kmeans", "acc": 0.5}]})
    found = findings.headline_findings(reference.load_results(tmp_path / "a"))
    assert "falls short" in found["critic"] and "12 of the 12" in found["critic"]
    assert found["critic"].startswith(f"Under the {findings.FRONT_PROTOCOL} feature protocol")
    assert "widest gap" in found["critic"] and "ensemble" not in found   # no ensemble rows stored
    assert "more accurately than k-means on Numbers but not on Fashion" in found["agent"]
    assert "averaged with three critics trained on synthetic problems" in found["agent"]  # load_reward()
    assert reference.NOT_RUN in found["baselines"]

    high = [_cell(p["train"], p["regime"], p["test"], min(100.0, p["best"] + 10), p["top3"], protocol="standard")
            for p in reference.POSTER_TABLE]
    _write(tmp_path / "b", "transfer", {"table": high})
    _write(tmp_path / "b", "baseline_spc", {
        "clustering": [{"dataset": "numbers", "method": "spc", "acc": 0.9, "n_points": 70000},
                       {"dataset": "fashion", "method": "spc", "acc": 0.3, "n_points": 70000}],
        "reference": [{"dataset": "numbers", "method": "k-means, pixels", "acc": 0.5},
                      {"dataset": "fashion", "method": "k-means, pixels", "acc": 0.5}]})
    found = findings.headline_findings(reference.load_results(tmp_path / "b"))
    assert "matches or beats" in found["critic"] and "0 of the 12" in found["critic"]
    assert "widest gap" not in found["critic"]
    assert "0.90 on Numbers and 0.30 on Fashion (70,000 images each), above k-means on the same pixels on Numbers" \
        in found["baselines"]
    assert reference.NOT_RUN in found["agent"]


def test_the_front_page_shows_one_named_protocol(tmp_path):
    """A transfer run stores both feature protocols; the front page's table and sentences
    read the same one, and the sentence names it."""
    rows = []
    for p in reference.POSTER_TABLE:
        rows.append(_cell(p["train"], p["regime"], p["test"], 10.0, 20.0, protocol="strict"))
        rows.append(_cell(p["train"], p["regime"], p["test"], 100.0, 100.0, protocol="standard"))
        rows.append(_cell(p["train"], p["regime"], p["test"], 90.0, 95.0, protocol="standard",
                          scorer=reference.ENSEMBLE, n_seeds=3))
    for row in rows:
        row.setdefault("scorer", "critic")
        row.setdefault("n_seeds", 3)
    _write(tmp_path, "transfer", {"table": rows})
    results = reference.load_results(tmp_path)
    for protocol, best in (("standard", "100"), ("strict", "10")):
        assert (findings.front_table(results, protocol)["Best: ours"] == best).all()
    standard = findings.headline_findings(results)
    assert "0 of the 12" in standard["critic"] and "standard feature protocol" in standard["critic"]
    assert "12 of the 12 cells" in standard["ensemble"] and "all 3 training seeds" in standard["ensemble"]
    strict = findings.headline_findings(results, protocol="strict")
    assert "12 of the 12" in strict["critic"] and "strict feature protocol" in strict["critic"]
    assert "ensemble" not in strict                                  # stored for the standard protocol only
    for call in (findings.front_table, findings.headline_findings):
        with pytest.raises(ValueError, match="unknown feature protocol"):
            call(results, protocol="pixels")
    assert results["transfer"]["metrics"]["table"] == rows          # nothing cut in place
    for row in rows:                                                 # a run that did not record its seeds
        del row["n_seeds"]
    _write(tmp_path / "no_seeds", "transfer", {"table": rows})
    found = findings.headline_findings(reference.load_results(tmp_path / "no_seeds"))
    assert "critics of all training seeds" in found["ensemble"]


def test_the_front_page_sentences_are_loaded_by_no_chapter_module():
    """Rewording a finding must not make stored results stale: the modules chapters use
    for their tables do not import :mod:`tdml_lib.findings`."""
    import subprocess
    import sys

    code = ("import sys, tdml_lib.reference, tdml_lib.plotting, tdml_lib.experiments.clustering; "
            "print('tdml_lib.findings' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_choosing_k_table_reads_domains_and_synthetic_protocols(tmp_path):
    """Domains give one row each (one seed); synthetic rows give the mean over critic seeds
    with the seed range; a missing method reads "not yet run", a missing run an empty table."""
    from tdml_lib import experiments

    runs = pd.DataFrame([
        {"training": t, "critic_seed": s, "family": "moons", "problem": i, "method": m, "K_true": 2,
         "K_found": k, "acc": acc}
        for t, s, m, i, k, acc in [("leave_one_out", 0, "agent (K found)", 0, 2, 1.0),
                                   ("leave_one_out", 0, "agent (K found)", 1, 5, 0.5),
                                   ("leave_one_out", 1, "agent (K found)", 0, 4, 0.6),
                                   ("leave_one_out", 1, "agent (K found)", 1, 3, 0.7),
                                   ("all_families", 0, "agent (K found)", 0, 2, 1.0),
                                   ("all_families", 0, "agent (K found)", 1, 2, 0.9),
                                   ("all_families", 0, "k-means (K by silhouette)", 0, 2, 0.8),
                                   ("all_families", 0, "k-means (K by silhouette)", 1, 3, 0.7),
                                   ("all_families", 0, reference.ENSEMBLE_K_FOUND, 0, 2, 1.0),
                                   ("all_families", 0, reference.ENSEMBLE_K_FOUND, 1, 3, 0.6),
                                   (experiments.SHIPPED_CRITIC_TRAINING, 0, "agent (K found)", 0, 2, 1.0),
                                   (experiments.SHIPPED_CRITIC_TRAINING, 0, "agent (K found)", 1, 6, 0.4),
                                   (experiments.DEFAULT_REWARD_TRAINING, 0, "agent (K found)", 0, 2, 1.0),
                                   (experiments.DEFAULT_REWARD_TRAINING, 0, "agent (K found)", 1, 2, 0.9)]])
    summary = experiments.protocol_summary(runs)
    _write(tmp_path, "clustering", {
        "clustering": [{"dataset": "numbers", "method": "agent", "acc": 0.7, "k_exact": 0.4, "n_problems": 10},
                       {"dataset": "numbers", "method": "kmeans_silhouette_k", "acc": 0.5, "k_exact": 0.1,
                        "n_problems": 10}],
        "synthetic_protocols": summary.to_dict(orient="records")})
    table = reference.choosing_k_table(reference.load_results(tmp_path)).set_index(["problems", "agent's reward"])
    assert table.loc[("numbers", "the default reward"), "agent (K found)"] == "40"
    assert table.loc[("numbers", "the default reward"), "k-means (K by silhouette)"] == "10"
    unseen = table.loc[("moons", "critic trained on the other families")]
    assert unseen["agent (K found)"] == "25 [0, 50]" and unseen["problems × seeds"] == "2 × 2"
    assert unseen["k-means (K by silhouette)"] == reference.NOT_RUN
    seen = table.loc[("moons", "critic trained on all six families")]
    assert seen["agent (K found)"] == "100" and seen["k-means (K by silhouette)"] == "50"
    # the agent with the critics' mean as its reward: its own column; not run on the domains or unseen
    assert seen[reference.ENSEMBLE_K_FOUND] == "50" and unseen[reference.ENSEMBLE_K_FOUND] == reference.NOT_RUN
    assert table.loc[("numbers", "the default reward"), reference.ENSEMBLE_K_FOUND] == ""
    # the one-run rewards on the synthetic families: the default reward (named as on the
    # domains) and its Numbers critic alone, one run each, no ensemble cell
    shipped = table.loc[("moons", "its Numbers critic alone")]
    assert shipped["agent (K found)"] == "50" and shipped[reference.ENSEMBLE_K_FOUND] == ""
    assert shipped["problems × seeds"] == "2 × 1"
    default = table.loc[("moons", "the default reward")]
    assert default["agent (K found)"] == "100" and default[reference.ENSEMBLE_K_FOUND] == ""
    assert reference.ENSEMBLE_K_FOUND is experiments.AGENT_ENSEMBLE_K_FOUND  # one name, tdml_lib.methods
    # an ensemble's rows come after every family's single-critic rows; the table keeps a family together
    is_ensemble = summary.method == reference.ENSEMBLE_K_FOUND
    single, ensemble = summary[~is_ensemble], summary[is_ensemble]
    formatted = reference.format_protocol_summary(pd.concat([single, single.assign(family="circles"),
                                                             ensemble, ensemble.assign(family="circles")]))
    assert [f for f, _ in formatted.index] == ["moons"] * 3 + ["circles"] * 3
    # one column per reward, in the order they ran; one value per table
    assert list(formatted.columns) == ["the other families", "all six families", "its Numbers critic alone",
                                       "the default reward"]
    assert formatted.columns.name == "true K found (%), by reward"
    shown = reference.format_protocol_summary(summary).loc[("moons", "agent (K found)")]
    assert shown["the other families"] == "25 [0, 50]" and shown["all six families"] == "100"
    assert shown["the default reward"] == "100" and shown["its Numbers critic alone"] == "50"
    acc = reference.format_protocol_summary(summary, "acc")
    assert acc.loc[("moons", "agent (K found)"), "the other families"] == "0.70 [0.65, 0.75]"
    assert acc.columns.name == "ACC, by reward"
    # a method a reward did not run: an empty cell
    assert acc.loc[("moons", "k-means (K by silhouette)"), "the default reward"] == ""
    with pytest.raises(ValueError, match="value must be one of"):
        reference.format_protocol_summary(summary, "nmi")
    # every seed gives the same value: the mean alone, no empty range
    same = summary.assign(k_exact_min=summary.k_exact, k_exact_max=summary.k_exact, n_seeds=2)
    assert reference.format_protocol_summary(same).loc[("moons", "agent (K found)"), "the other families"] == "25"
    assert reference.choosing_k_table({}).empty
    # the protocols compared in one sentence: all families find K more often on moons
    assert "more often than the critics that never saw the family on 1 of 1 synthetic families" in \
        reference.protocol_comparison(reference.load_results(tmp_path))
    assert reference.protocol_comparison({}) == ""


def test_theme_sizes_figures_for_the_column():
    matplotlib.use("Agg")
    plotting.set_theme()
    fig, axes = plotting.figure(3, 2)
    assert axes.shape == (2, 3)
    width, height = fig.get_size_inches()
    assert width == pytest.approx(plotting.COLUMN_WIDTH) and height > 2 * plotting.ROW_HEIGHT
    assert fig.get_layout_engine().__class__.__name__ == "ConstrainedLayoutEngine"
    assert matplotlib.rcParams["figure.dpi"] == plotting.DPI
    with pytest.raises(ValueError, match="ncols"):
        plotting.figure(0)
    grid = plotting.image_grid(np.zeros((52, 28, 28)), list("ab") * 26, n_cols=20, title="t")
    assert grid.get_size_inches()[0] == pytest.approx(plotting.COLUMN_WIDTH)
    with pytest.raises(ValueError, match="needs images"):
        plotting.image_grid(np.zeros((0, 28, 28)))
    import matplotlib.pyplot as plt
    plt.close("all")


def test_suptitle_does_not_overlap_the_panels():
    """With the book's figure helper, a suptitle sits above every panel's title."""
    matplotlib.use("Agg")
    plotting.set_theme()
    fig, axes = plotting.figure(4)
    for ax in axes:
        ax.set_title("a panel title")
        ax.plot([0, 1], [0, 1])
    title = fig.suptitle("A long figure title that must not overlap")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    top = title.get_window_extent(renderer)
    for ax in axes:
        assert ax.title.get_window_extent(renderer).y1 <= top.y0 + 1
    import matplotlib.pyplot as plt
    plt.close("all")


def test_figures_warn_when_drawn_with_overlapping_titles():
    import io
    import warnings

    import matplotlib.pyplot as plt

    matplotlib.use("Agg")
    plotting.set_theme()
    for titles, expected in [(["generation 10: K=5, R=26.48"] * 4, True), (["generation 10\nK=5, R=26.48"] * 4, False)]:
        fig, axes = plotting.figure(4, 1, height=2.6)
        for ax, title in zip(axes, titles):
            ax.set(title=title, xticks=[], yticks=[])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fig.savefig(io.BytesIO(), format="png")
        assert any(issubclass(w.category, plotting.OverlappingTextWarning) for w in caught) is expected
        assert bool(plotting.overlapping_texts(fig)) is expected
        plt.close(fig)


def test_overlap_check_ignores_undrawn_tick_labels_and_hidden_axes():
    """Tick labels beyond the view limits and the ticks of an axes turned off are not
    drawn, so they cannot overlap anything."""
    import matplotlib.pyplot as plt

    matplotlib.use("Agg")
    plotting.set_theme()
    fig, axes = plotting.figure(3, 1, height=3.0)
    for ax in axes[:2]:
        ax.plot(np.arange(2, 13), np.random.default_rng(1).normal(size=11) * 20, marker="o")
        ax.set(title="best reward at each K\n(critic)", xlabel="K", ylabel="reward")
    axes[2].imshow(np.zeros((28, 28)))
    axes[2].axis("off")
    fig.canvas.draw()
    assert plotting.overlapping_texts(fig) == []
    plt.close(fig)


def test_k_found_by_protocol_draws_each_reward_once():
    """Chapter 4's protocol figure: a bar per protocol and family (whisker = seed range),
    a diamond per family for the ensemble, a gold star per family for the default reward
    and a red one for its Numbers critic alone, the k-means dash; families in the
    summary's order."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from tdml_lib import experiments, plotting

    runs = pd.DataFrame([
        {"training": t, "critic_seed": s, "family": f, "problem": 0, "method": m, "K_true": 2, "K_found": k, "acc": 1.0}
        for f in ("moons", "circles") for t, s, m, k in [
            ("leave_one_out", 0, "agent (K found)", 2), ("leave_one_out", 1, "agent (K found)", 3),
            ("all_families", 0, "agent (K found)", 2), ("all_families", 0, "k-means (K by silhouette)", 4),
            ("all_families", 0, reference.ENSEMBLE_K_FOUND, 2),
            (experiments.SHIPPED_CRITIC_TRAINING, 0, "agent (K found)", 5),
            (experiments.DEFAULT_REWARD_TRAINING, 0, "agent (K found)", 2)]])
    summary = experiments.protocol_summary(runs)
    fig = plotting.k_found_by_protocol(summary, ["leave_one_out", "all_families"], reference.TRAINING_LABELS, "t")
    ax = fig.axes[0]
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert [round(b.get_height()) for b in bars] == [50, 50, 100, 100]   # per protocol: moons, circles
    assert [t.get_text() for t in ax.get_xticklabels()] == ["moons", "circles"]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "agent, the reward's Numbers critic alone" in legend and "agent, mean of the seeds' critics" in legend
    assert "agent, the default reward (what tdml.cluster uses)" in legend
    drawn = {c.get_label(): list(np.round(c.get_offsets()[:, 1])) for c in ax.collections}
    assert drawn["agent, the default reward (what tdml.cluster uses)"] == [100.0, 100.0]
    assert drawn["agent, the reward's Numbers critic alone"] == [0.0, 0.0]
    assert "agent, critic: the other families" in legend and "k-means (K by silhouette)" in legend
    plt.close(fig)
