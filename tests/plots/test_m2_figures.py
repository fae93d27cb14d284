"""The figures of a class-conditional model (M2, Kingma et al. 2014): analogies and class-conditional samples on a
tiny trained run, cell by cell against the model's own style/generate, the report, and the skip messages."""

from __future__ import annotations

import html

import pytest
import torch

from vaekit.plots import figures as F
from vaekit.plots.run_figures import CAPTIONS
from vaekit.runs import load_run, load_test_data, run_figures


@pytest.fixture(scope="module")
def m2(m2_run):
    """(model, test x, test y) of the session's tiny M2 run."""
    cfg, model, _ = load_run(m2_run[0])
    x, y = load_test_data(cfg)
    return model, x, y


@pytest.fixture
def spy(monkeypatch):
    """What the next figure hands to grid_panel: images, ncol and the labels."""
    drawn: dict = {}
    real = F.grid_panel

    def grid_panel(ax, images, ncol, **kw):
        drawn.update(images=images, ncol=ncol, **kw)
        return real(ax, images, ncol, **kw)

    monkeypatch.setattr(F, "grid_panel", grid_panel)
    return drawn


def test_the_run_report_shows_the_m2_figures_with_captions_and_the_test_error(m2_run):
    run_dir, summary = m2_run
    assert (run_dir / "figures" / "analogies.png").is_file() and (run_dir / "figures" / "class-samples.png").is_file()
    page = (run_dir / "report.html").read_text()
    for name in ("analogies", "class-samples"):
        assert f'id="fig-{name}"' in page and html.escape(CAPTIONS[name]) in page
    err = summary["test"]["error"]
    assert 0.0 <= err < 0.9
    assert "test classification error of q(y|x)" in page and f"{100 * err:.2f} %" in page
    assert "best validation accuracy of q(y|x)" in page
    assert html.escape("capability 'continuous'") in page


def test_all_draws_the_m2_figures_and_says_truly_why_it_skips_the_others(m2_run, tmp_path, png_size):
    run_dir, _ = m2_run
    written, skipped = run_figures(run_dir, ["all"], tmp_path)
    assert {"reconstructions", "samples", "latent-map", "analogies", "class-samples", "curves", "kl"} <= set(written)
    assert set(skipped) == {"traversals", "interpolation", "manifold", "latent-gif"}
    for kind in ("traversals", "interpolation", "manifold"):
        assert "needs a model with the capability 'continuous'" in skipped[kind]
        assert "this M2 has: class-conditional, classifier, discrete" in skipped[kind]
    # one row per digit class (the test split has all ten), an input column and ten class columns of 40 px cells
    assert png_size(written["analogies"]) == (60 + 20 + 11 * 40, 60 + 45 + 10 * 40)
    assert png_size(written["class-samples"]) == (60 + 20 + 10 * 40, 60 + 45 + 8 * 40)
    with pytest.raises(ValueError, match="capability 'continuous'"):
        run_figures(run_dir, ["manifold"], tmp_path)
    from vaekit.plots.run_figures import _group_label
    from vaekit.runs import load_run

    # the KL heat map's rows: the units of z, then KL(q(y|x) || p(y)), named from the model's layout
    assert _group_label(load_run(run_dir)[1]) == "KL unit (z, y)"


def test_analogy_column_k_decodes_class_k_at_the_rows_style(m2, tmp_path, spy):
    model, x, y = m2
    xs, ys = x[:3], y[:3]
    F.plot_analogies(model, xs, tmp_path / "a.png", y=ys)
    k = model.n_classes
    assert spy["ncol"] == k + 1 and spy["col_labels"] == ["input"] + [str(c) for c in range(k)]
    assert spy["row_labels"] == [f"y={c}" for c in ys.tolist()]
    cells = spy["images"].reshape(3, k + 1, *model.data_shape)  # (rows, columns, C, H, W)
    assert torch.equal(cells[:, 0], xs)  # the first column is the input itself
    style = model.style(xs, ys)  # (3, D) E_q[z | x, y] at the true labels
    for c in range(k):
        want = model.generate(style, torch.full((3,), c))  # (3, C, H, W)
        torch.testing.assert_close(cells[:, c + 1], want)
    # the class changes the image (a decoder that ignored y would pass the check above trivially)
    assert (cells[:, 1] - cells[:, 2]).abs().max() > 1e-3
    # without labels the style is inferred at the class q(y|x) predicts
    F.plot_analogies(model, xs, tmp_path / "b.png")
    pred = model.predict(xs)
    assert spy["row_labels"] == [f"y={c}" for c in pred.tolist()]
    cells = spy["images"].reshape(3, k + 1, *model.data_shape)
    torch.testing.assert_close(cells[:, 4], model.generate(model.style(xs, pred), torch.full((3,), 3)))


def test_class_samples_share_one_prior_draw_per_row_and_are_seeded(m2, tmp_path, spy):
    model, _, _ = m2
    state = torch.get_rng_state()
    a = F.plot_class_samples(model, tmp_path / "a.png", n=3, seed=5).read_bytes()
    assert torch.equal(torch.get_rng_state(), state)
    k = model.n_classes
    assert spy["ncol"] == k and spy["row_labels"] == ["z1", "z2", "z3"]
    cells = spy["images"].reshape(3, k, *model.data_shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        z = torch.randn(3, model.latent_dim)  # the figure's draws
    for c in range(k):
        torch.testing.assert_close(cells[:, c], model.generate(z, torch.full((3,), c)))
    assert a == F.plot_class_samples(model, tmp_path / "b.png", n=3, seed=5).read_bytes()
    assert a != F.plot_class_samples(model, tmp_path / "c.png", n=3, seed=6).read_bytes()
    with pytest.raises(ValueError, match="at least one row"):
        F.plot_class_samples(model, tmp_path / "d.png", n=0)


def test_a_model_without_a_class_input_has_no_m2_figures(tiny_model, digits_x, tmp_path):
    with pytest.raises(ValueError, match="an analogies figure needs a model with the capability 'class-conditional' .* this VAE has"):
        F.plot_analogies(tiny_model, digits_x[:2], tmp_path / "a.png")
    with pytest.raises(ValueError, match="a class-samples figure needs a model with the capability 'class-conditional'"):
        F.plot_class_samples(tiny_model, tmp_path / "c.png")
    F.require_single_latent(tiny_model, "a traversal figure")  # a one-latent VAE passes


def test_analogies_check_their_labels(m2, tmp_path):
    model, x, _ = m2
    with pytest.raises(ValueError, match="one class per input"):
        F.plot_analogies(model, x[:3], tmp_path / "a.png", y=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="class ids in 0..9"):
        F.plot_analogies(model, x[:2], tmp_path / "a.png", y=torch.tensor([0, 12]))
