"Lesson 12a: the SAGAN block, hinge losses, spectral norm, and StarGAN v1 with them (placement, training, exact resume, translator, CLI)."
import pytest, torch
from torch import nn
import torch.nn.functional as F
from fastai.callback.core import Callback, CancelFitException
from stargan_v2.attention import SelfAttention, d_hinge_loss, g_hinge_loss, add_spectral_norm, sa_gammas, attention_maps
from stargan_v2.v1 import V1Config, Generator, Discriminator, build_v1, train_v1, cli_train, V1Translator, V1_PRESETS
from stargan_v2.checkpoints import safe_load
from helpers import assert_equal

def test_identity_at_init_and_rows_sum_to_one():
    torch.manual_seed(0)
    sa = SelfAttention(64)
    assert [c.weight.shape[:2] for c in (sa.f, sa.g, sa.h, sa.v)] == [(8, 64)] * 3 + [(64, 8)]
    x = torch.randn(3, 64, 4, 6)
    y, a = sa(x, return_attn=True)
    assert torch.equal(y, x) and a.shape == (3, 24, 24)
    torch.testing.assert_close(a.sum(-1), torch.ones(3, 24))
    with torch.no_grad(): sa.gamma.fill_(1.)
    assert (sa(x) - x).abs().max() > 1e-3            # once γ ≠ 0 the block does something

def test_block_matches_einsum_formula():
    "y_j = x_j + γ v(Σ_i softmax_i(f(x_i)·g(x_j)) h(x_i)), written independently with einsum."
    torch.manual_seed(1)
    sa = SelfAttention(16, bias=True)
    with torch.no_grad(): sa.gamma.fill_(-0.3)
    x = torch.randn(2, 16, 3, 5)
    W = lambda m: m.weight[:, :, 0, 0]
    conv = lambda m, t: torch.einsum('oc,bcn->bon', W(m), t) + m.bias[None, :, None]
    X = x.flatten(2)
    beta = torch.einsum('bci,bcj->bji', conv(sa.f, X), conv(sa.g, X)).softmax(-1)
    o = conv(sa.v, torch.einsum('bji,bci->bcj', beta, conv(sa.h, X)))
    torch.testing.assert_close(sa(x), (X - 0.3 * o).view_as(x), rtol=1e-5, atol=1e-5)

def test_hinge_hand_values():
    r, f = d_hinge_loss(torch.full((2, 1, 2, 2), 2.), torch.full((2, 1, 2, 2), -2.))
    assert r.item() == 0 and f.item() == 0
    assert sum(d_hinge_loss(torch.zeros(5), torch.zeros(5))).item() == 2
    r, f = d_hinge_loss(torch.tensor([0.5, 3., -1.]), torch.tensor([-0.5, 1., -4.]))
    assert r.item() == pytest.approx((0.5 + 0 + 2) / 3) and f.item() == pytest.approx((0.5 + 2 + 0) / 3)
    assert g_hinge_loss(torch.tensor([-0.5, 1., 2.5])).item() == pytest.approx(-1.)

def test_spectral_norm_top_singular_value():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 32, 4, 2, 1), nn.LeakyReLU(0.01), nn.Linear(5, 7), nn.Conv2d(32, 4, 3))
    with torch.no_grad(): m[0].weight.mul_(25)
    add_spectral_norm(m, skip=[m[3]])
    assert hasattr(m[0], 'parametrizations') and hasattr(m[2], 'parametrizations') and not hasattr(m[3], 'parametrizations')
    for _ in range(10): m[0](torch.randn(2, 3, 8, 8))
    assert torch.linalg.matrix_norm(m[0].weight.flatten(1), 2).item() == pytest.approx(1., abs=1e-3)

def test_readers():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 1), SelfAttention(8), nn.Sequential(SelfAttention(8)))
    x = torch.randn(1, 3, 4, 4)
    maps = attention_maps(net, x)
    assert len(maps) == 2 and maps[0].shape == (1, 16, 16) and all(b.attn is None and not b.keep_attn for b in (net[1], net[2][0]))
    torch.testing.assert_close(maps[0], net[1](net[0](x), return_attn=True)[1])
    assert sa_gammas(nn.ModuleDict({'generator': net})) == {'SA/gamma_generator_0': 0., 'SA/gamma_generator_1': 0.}

@pytest.mark.parametrize('down', [0, 1, 2, 3])
def test_generator_placement_any_down(down):
    G = Generator(8, 3, 1, down=down, sa=True)
    kinds = [type(m).__name__ for m in G.main]
    i = kinds.index('SelfAttention')
    assert kinds.count('SelfAttention') == 1
    if down: assert kinds[i - 3] == 'ConvTranspose2d' and kinds[:i].count('ConvTranspose2d') == 1
    else: assert kinds[i - 1] == 'ResidualBlock'
    c = 8 * 2**down // (2 if down else 1)
    assert G.main[i].v.out_channels == c
    x, lab = torch.randn(2, 3, 16, 16), F.one_hot(torch.tensor([0, 1]), 3).float()
    assert G(x, lab).shape == x.shape

def test_defaults_keep_the_official_layout():
    "The switches default off: the state-dict keys of lesson 12's nets are unchanged, and the new presets differ only where they say."
    plain = build_v1(V1Config.official())
    assert not any(isinstance(m, SelfAttention) for m in plain.modules())
    assert not any('parametrizations' in k for k in plain.state_dict())
    sa = build_v1(V1Config.shapes_sa())
    D = sa.discriminator
    assert isinstance(D.main[2], SelfAttention) and hasattr(D.main[0], 'parametrizations') and hasattr(D.main[2].f, 'parametrizations')
    assert hasattr(D.conv1, 'parametrizations') and not hasattr(D.conv2, 'parametrizations')   # no SN on the cls head
    a, b = V1Config.shapes(), V1Config.shapes_sa()
    assert b.d_lr == pytest.approx(4 * b.lr) and (b.n_critic, b.beta1, b.beta2, b.lambda_gp, b.adv) == (1, 0., 0.9, 0., 'hinge')
    assert all(getattr(a, k) == getattr(b, k) for k in ('img_size', 'g_conv_dim', 'd_conv_dim', 'g_repeat_num', 'g_down_num', 'd_repeat_num', 'batch_size'))
    assert 'shapes_sa' in V1_PRESETS
    with pytest.raises(ValueError, match='adv'): a.replace(adv='lsgan')

TINY_SA = V1Config.tiny(adv='hinge', sn=True, sa_g=True, sa_d=True, lambda_gp=0., n_critic=1, lr=1e-3, d_lr=4e-3, beta1=0., beta2=0.9,
                        total_iters=6, save_every=3, sample_every=3, print_every=3, ema_beta=0.)   # lesson 12a's recipe: no EMA of G

def _run(out, cfg=TINY_SA, **kw): return train_v1(cfg, out, device='cpu', verbose=False, progress=False, **kw)

class _StopAt(Callback):
    order = 50
    def __init__(self, at): self.at = at
    def after_batch(self):
        if self.learn.train_iter == self.at: raise CancelFitException()

def test_sa_v1_trains_logs_gamma_and_loads(tmp_path):
    learn = _run(tmp_path)
    h = learn.loss_log.hist
    assert len(h['SA/gamma_generator']) == 6 and len(h['SA/gamma_discriminator']) == 6
    assert h['SA/gamma_generator'][-1] != 0 and h['SA/gamma_discriminator'][-1] != 0 and set(h['D/loss_gp']) == {0.}
    assert all(v >= 0 for v in h['D/loss_real'] + h['D/loss_fake'])      # hinge terms are never negative
    from stargan_v2.translator import load_translator
    cfg, tr = load_translator(tmp_path)
    assert isinstance(tr, V1Translator) and cfg.sa_g and cfg.adv == 'hinge'
    assert any(isinstance(m, SelfAttention) for m in tr.generator.modules())
    G = learn.model.generator
    gam = lambda g: next(m for m in g.modules() if isinstance(m, SelfAttention)).gamma
    assert gam(G).item() == h['SA/gamma_generator'][-1] and torch.equal(gam(tr.generator), gam(G))
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(tr(x, 0, 2), G(x, F.one_hot(torch.tensor([2, 2]), 3).float()))

@pytest.mark.reliability
def test_sa_v1_resume_is_bitwise_exact(tmp_path):
    _run(tmp_path/'straight')
    assert _run(tmp_path/'resumed', cbs=[_StopAt(4)]).train_iter == 4
    assert _run(tmp_path/'resumed', resume=True).train_iter == 6
    for kind in ('nets', 'optims', 'state'):
        a, b = (safe_load(tmp_path/r/'checkpoints'/f'000006_{kind}.ckpt') for r in ('straight', 'resumed'))
        assert_equal(a, b, kind)
    assert any(k.endswith('_u') for k in safe_load(tmp_path/'straight'/'checkpoints'/'000006_nets.ckpt')['discriminator'])

def test_cli_preset_shapes_sa(tmp_path):
    from stargan_v2.cli import main
    assert main(['train', '--model', 'stargan_v1', '--preset', 'shapes_sa', '--out', str(tmp_path/'r'), '--iters', '2', '--device', 'cpu',
                 '--quiet', '--set', 'g_conv_dim=4', 'd_conv_dim=8', 'g_repeat_num=1', 'batch_size=4', 'val_batch_size=4']) == 0
    from stargan_v2.translator import run_config, load_translator
    d = run_config(tmp_path/'r')
    assert (d['name'], d['adv'], d['sa_g'], d['sn']) == ('shapes_sa', 'hinge', True, True)
    cfg, tr = load_translator(tmp_path/'r')
    assert cfg == V1Config.shapes_sa(total_iters=2, decay_iters=1, g_conv_dim=4, d_conv_dim=8, g_repeat_num=1, batch_size=4, val_batch_size=4)
