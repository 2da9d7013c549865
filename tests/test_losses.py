"Losses of lesson 03 on the real networks: gradients go where the paper says, R1 matches finite differences."
import math
import pytest, torch
from stargan_v2.core import Config, set_seed
from stargan_v2.models import build_nets
from stargan_v2.losses import adv_loss, r1_reg, d_loss, g_loss, ds_weight

@pytest.fixture(scope='module')
def setup():
    set_seed(0); cfg = Config.tiny(); nets = build_nets(cfg)
    B, S = 3, cfg.img_size
    g = torch.Generator().manual_seed(1)
    x, xr, xr2 = (torch.randn(B, 3, S, S, generator=g) for _ in range(3))
    y, yt = torch.tensor([0, 1, 2]), torch.tensor([2, 0, 1])
    z, z2 = (torch.randn(B, cfg.latent_dim, generator=g) for _ in range(2))
    return cfg, nets, x, xr, xr2, y, yt, z, z2

def _grads(nets, name): return [p.grad for p in getattr(nets, name).parameters()]
def _has_grad(nets, name): return any(g is not None and g.abs().sum() > 0 for g in _grads(nets, name))

def test_adv_loss_is_bce_on_logits():
    l = torch.tensor([-2., 0.3, 4.])
    torch.testing.assert_close(adv_loss(l, 1), -torch.log(torch.sigmoid(l)).mean())
    torch.testing.assert_close(adv_loss(l, 0), -torch.log(1 - torch.sigmoid(l)).mean())

def test_r1_matches_finite_differences(setup):
    cfg, nets, x, *_ = setup
    D, y = nets.discriminator.double(), torch.tensor([0, 1, 2])
    x = x.double().requires_grad_()
    r1 = r1_reg(D(x, y), x)
    # ‖∇ₓD‖² from central differences along each image's own gradient direction
    g, = torch.autograd.grad(D(x, y).sum(), x)
    u = g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    eps = 1e-5
    with torch.no_grad(): dd = (D(x + eps*u, y) - D(x - eps*u, y)) / (2*eps)   # = ‖∇ₓD_i‖ per image
    torch.testing.assert_close(r1.detach(), 0.5 * dd.pow(2).mean(), rtol=1e-4, atol=1e-8)
    nets.discriminator.float()

def test_d_loss_reaches_only_d(setup):
    cfg, nets, x, xr, xr2, y, yt, z, z2 = setup
    nets.zero_grad(set_to_none=True)
    loss, parts = d_loss(nets, cfg, x, y, yt, x_ref=xr)
    loss.backward()
    assert _has_grad(nets, 'discriminator')
    for n in ('generator', 'mapping_network', 'style_encoder'): assert all(g is None for g in _grads(nets, n)), n
    assert set(parts) == {'real', 'fake', 'reg'} and all(math.isfinite(v) for v in parts.values())

def test_g_loss_latent_trains_f_and_e_reference_not_f(setup):
    cfg, nets, x, xr, xr2, y, yt, z, z2 = setup
    nets.zero_grad(set_to_none=True)
    g_loss(nets, cfg, x, y, yt, z_trgs=(z, z2))[0].backward()
    assert all(_has_grad(nets, n) for n in ('generator', 'mapping_network', 'style_encoder'))
    nets.zero_grad(set_to_none=True)
    g_loss(nets, cfg, x, y, yt, x_refs=(xr, xr2))[0].backward()
    assert all(g is None for g in _grads(nets, 'mapping_network'))   # F is not used in the reference step
    assert _has_grad(nets, 'style_encoder')                          # E gets a gradient (the trainer does not step it)

def test_g_loss_weights_combine_terms(setup):
    cfg, nets, x, xr, xr2, y, yt, z, z2 = setup
    c2 = cfg.replace(lambda_sty=2., lambda_cyc=3.)
    loss, p = g_loss(nets, c2, x, y, yt, z_trgs=(z, z2), lambda_ds=0.5)
    assert abs(loss.item() - (p['adv'] + 2*p['sty'] - 0.5*p['ds'] + 3*p['cyc'])) < 1e-5

def test_ds_weight_is_linear_and_clamped():
    assert [ds_weight(t, 1., 4) for t in range(6)] == [1., .75, .5, .25, 0., 0.]


def test_mismatch_term_is_off_in_paper_presets_and_on_for_shapes():
    assert Config.afhq().lambda_mis == 0 and Config.celeba_hq().lambda_mis == 0
    assert Config.shapes().lambda_mis > 0


def test_mismatch_term_trains_other_branches_to_reject_real_images(setup):
    "lambda_mis > 0 adds exactly λ·BCE(D_other(x_real), 0); it reaches only D; off, it draws no random numbers."
    cfg, nets, x, xr, xr2, y, yt, z, z2 = setup
    from stargan_v2.losses import mismatch_domains
    c = cfg.replace(lambda_mis=2.)
    torch.manual_seed(3); ym = mismatch_domains(y, cfg.num_domains)
    assert (ym != y).all()
    torch.manual_seed(3); loss_m, parts_m = d_loss(nets, c, x, y, yt, x_ref=xr)
    with torch.no_grad(): want = adv_loss(nets.discriminator(x, ym), 0).item()
    assert parts_m['mis'] == pytest.approx(want, rel=1e-5)
    loss_0, parts_0 = d_loss(nets, cfg, x, y, yt, x_ref=xr)
    assert 'mis' not in parts_0
    assert loss_m.item() == pytest.approx(loss_0.item() + 2. * want, rel=1e-5)
    nets.zero_grad(set_to_none=True); loss_m.backward()
    assert _has_grad(nets, 'discriminator')
    for n in ('generator', 'mapping_network', 'style_encoder'): assert all(g is None for g in _grads(nets, n)), n
    st = torch.get_rng_state(); d_loss(nets, cfg, x, y, yt, x_ref=xr); assert torch.equal(torch.get_rng_state(), st)
    with pytest.raises(ValueError, match='at least 2 domains'): mismatch_domains(torch.zeros(3, dtype=torch.long), 1)

def test_lazy_r1_step_weighs_the_penalty_k_times_and_skipped_step_has_none(setup):
    cfg, nets, x, xr, xr2, y, yt, z, z2 = setup
    torch.manual_seed(5); l1, p1 = d_loss(nets, cfg, x, y, yt, x_ref=xr)                      # official: λ_reg·R1
    torch.manual_seed(5); l4, p4 = d_loss(nets, cfg.replace(r1_every=4), x, y, yt, x_ref=xr)  # lazy, R1 step: 4·λ_reg·R1
    torch.manual_seed(5); l0, p0 = d_loss(nets, cfg.replace(r1_every=4), x, y, yt, x_ref=xr, r1=False)
    assert p1['reg'] == p4['reg'] > 0 and 'reg' not in p0 and p0['real'] == p1['real'] and p0['fake'] == p1['fake']
    torch.testing.assert_close(l4 - l1, 3 * cfg.lambda_reg * torch.tensor(p1['reg']))
    torch.testing.assert_close(l0, l1 - cfg.lambda_reg * torch.tensor(p1['reg']))
