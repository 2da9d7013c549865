"Explorers: render functions against independent computations, widget shells driven like a user, and loaded checkpoints."
import colorsys, datetime, json
from dataclasses import asdict
import numpy as np
import pytest
import torch

from stargan_v2.core import Config, set_seed, to_uint8
from stargan_v2.models import build_nets, ema_copy, Nets
from stargan_v2.shapes import shapes_path, measure_shapes
from stargan_v2.data import load_domain_images
from stargan_v2.sampling import make_z, mean_styles, translate_latent
from stargan_v2.explorer import (render_latent, render_reference, render_interp, end_styles, style_pca, pca_style,
                                 render_style_space, direction_effects, StylePCA, latent_explorer, reference_explorer,
                                 interp_explorer, style_space_explorer, strip, to_png, from_png)


@pytest.fixture(scope='module')
def setup():
    set_seed(0); cfg = Config.tiny(); nets = build_nets(cfg).eval()
    x, y, doms = load_domain_images(shapes_path()/'val', cfg.img_size, n_per_domain=3)
    return cfg, nets, x, y, doms


def test_render_latent_matches_translate_latent(setup):
    cfg, nets, x, y, doms = setup
    s_avg = mean_styles(nets, n=500)
    r = render_latent(nets, x[4], 2, seeds=[7, 8, 9], psi=.4, s_avg=s_avg)
    want = translate_latent(nets, x[4:5].expand(3, -1, -1, -1), 2, z_trg=torch.cat([make_z(1, cfg.latent_dim, s) for s in (7, 8, 9)]),
                            psi=.4, s_avg=s_avg)
    torch.testing.assert_close(r[1:], want, atol=1e-5, rtol=1e-4)
    # at ψ=0 every seed shows the same (mean) style
    r0 = render_latent(nets, x[4], 2, seeds=[1, 2], psi=0., s_avg=s_avg)
    torch.testing.assert_close(r0[1], r0[2], atol=1e-5, rtol=1e-4)


def test_style_pca_recovers_a_known_direction():
    "F whose styles vary mostly along one known axis: PCA must find that axis and its spread."
    class _F(torch.nn.Module):
        def __init__(self):
            super().__init__(); self.lin = torch.nn.Linear(4, 6); self.unshared = torch.nn.ModuleList([torch.nn.Identity()])
        def forward(self, z, y):
            d = torch.tensor([1., 2, 0, 0, 0, 2]) / 3          # unit direction
            return 5 * z[:, :1] * d + 0.1 * z[:, 1:2] * torch.tensor([0., 0, 1, 0, 0, 0]) + 3.
    nets = Nets(mapping_network=_F())                       # F alone: what `style_pca` needs
    p = style_pca(nets, 0, k=2, n=4000)
    assert abs(abs(float(p.dirs[0] @ (torch.tensor([1., 2, 0, 0, 0, 2]) / 3))) - 1) < 1e-4
    assert abs(float(p.std[0]) - 5) < 0.3 and abs(float(p.std[1]) - 0.1) < 0.01
    torch.testing.assert_close(p.mean, torch.full((6,), 3.) , atol=0.3, rtol=0)
    torch.testing.assert_close(pca_style(p, [1.]), p.mean + p.std[0] * p.dirs[0])


def test_direction_effects_names_fill_hue(setup):
    "A hand-made generator that recolours only the shape, with a hue set by s₁, must be labelled fill_hue along s₁."
    cfg, nets, x, y, doms = setup
    xs, _, _ = load_domain_images(shapes_path()/'val', 64, n_per_domain=2)
    class _HueFill(torch.nn.Module):
        def forward(self, x, s, masks=None):
            out = x.clone()
            for j in range(len(x)):
                r, g, b = colorsys.hsv_to_rgb((0.5 + 0.45 * torch.tanh(s[j, 1]).item()) % 1, .9, .9)
                fg = (x[j] - x[j, :, :1, :1]).abs().sum(0) > 0.3
                out[j][:, fg] = torch.tensor([r, g, b]).mul(2).sub(1)[:, None]
            return out
    e = torch.eye(cfg.style_dim)
    toy = StylePCA(mean=torch.zeros(cfg.style_dim), dirs=e[[1, 0]], std=torch.ones(2), y=0)
    eff = direction_effects(Nets(generator=_HueFill()), xs, [toy], amount=1.)
    assert eff.controls[0] == 'fill_hue' and eff.fill_hue[0] > 0.3
    assert eff.fill_hue[1] < 0.02 and eff.bg_hue.max() < 0.05
    # and the measurement agrees with measure_shapes directly
    assert set(measure_shapes(xs).columns) >= {'fill_hue', 'bg_hue', 'pattern', 'size'}


def test_reference_explorer_upload_and_domain(setup):
    cfg, nets, x, y, doms = setup
    ex = reference_explorer(nets, x, y, doms, size=16, )
    img = ex.children[-1]; src_w, ref_w, dom_w = ex.children[2].children; swap_w, up_w = ex.children[3].children
    before = img.value
    upload = to_png(to_uint8(x[4]))
    up_w.value = ({'name': 'mine.png', 'type': 'image/png', 'size': len(upload), 'content': memoryview(upload),
                   'last_modified': datetime.datetime.now(datetime.timezone.utc)},)
    shown = from_png(img.value)
    assert img.value != before
    np.testing.assert_array_equal(shown[:, 20:36], strip(x[4:5], 16))   # the uploaded image is the reference
    torch.testing.assert_close(torch.from_numpy(shown[:, 40:56].copy()).float(),
                               torch.from_numpy(strip(render_reference(nets, x[0], x[4], dom_w.value)[2:], 16)).float(), atol=1, rtol=0)
    dom_w.value = (dom_w.value + 1) % len(doms)                           # another head of E: another style
    assert from_png(img.value)[:, 40:56].tolist() != shown[:, 40:56].tolist()


def test_explorers_accept_a_loaded_checkpoint(setup, tmp_path):
    "The shells work with nets loaded from a checkpoint (what the Voila app does with $STARGAN_V2_CHECKPOINT)."
    from stargan_v2.checkpoints import save_nets, load_nets_ema
    cfg, nets, x, y, doms = setup
    (tmp_path/'checkpoints').mkdir(); (tmp_path/'config.json').write_text(json.dumps(asdict(cfg)))
    save_nets(ema_copy(nets), tmp_path/'checkpoints'/'000001_nets_ema.ckpt')
    _, nets2 = load_nets_ema(tmp_path)
    nets2 = nets2.eval()
    for make in (lambda: latent_explorer(nets2, x, y, doms, s_avg=mean_styles(nets2, n=200), size=16),
                 lambda: interp_explorer(nets2, x, y, doms, size=16),
                 lambda: style_space_explorer(nets2, x, y, doms, k=2, size=16)):
        img = make().children[-1]
        assert from_png(img.value).shape[0] == 16
    a = render_interp(nets, x[0], *end_styles(nets, 'domains', 0, 1, seed=3), .3)
    b = render_interp(nets2, x[0], *end_styles(nets2, 'domains', 0, 1, seed=3), .3)
    torch.testing.assert_close(a, b)
