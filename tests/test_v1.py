"StarGAN v1 (lesson 12): official parameter counts, the released-weights layout, exact resume, NaN guard, foreign checkpoints, a training smoke test."
import pickle
import pytest, torch
from torch import nn
import torch.nn.functional as F
from stargan_v2.core import count_params
from stargan_v2.checkpoints import CheckpointMismatch, UnsafeCheckpointError
from stargan_v2.v1 import V1Config, build_v1, Generator, Discriminator, load_official_v1, v1_lr, tile_label

def test_official_parameter_counts():
    "The counts computed from the official layer tables (reference notes §2, §3, §8b)."
    n = build_v1(V1Config.official())
    assert (count_params(n.generator), count_params(n.discriminator)) == (8_430_528, 44_762_048)
    n8 = build_v1(V1Config.official(num_domains=8))
    assert count_params(n8.generator) + count_params(n8.discriminator) == 53_226_560   # the paper's 53.2M
    assert count_params(Generator(64, 15, 6)) == 8_461_888 and count_params(Discriminator(128, 64, 13, 6)) == 44_827_584

def test_official_decay_does_not_decay():
    lin, off = V1Config.official(), V1Config.official(decay='official')
    assert v1_lr(200_000, 1e-4, lin) == pytest.approx(0., abs=1e-15)
    assert v1_lr(200_000, 1e-4, off) == pytest.approx(0.999e-4, rel=1e-12)

# --- the authors' layout, written independently of stargan_v2.v1: nn.Sequential `main`, IN with running stats ---------
def _in(n): return nn.InstanceNorm2d(n, affine=True, track_running_stats=True)

class _OffRes(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.main = nn.Sequential(nn.Conv2d(d, d, 3, 1, 1, bias=False), _in(d), nn.ReLU(),
                                  nn.Conv2d(d, d, 3, 1, 1, bias=False), _in(d))
    def forward(self, x): return x + self.main(x)

class _OffG(nn.Module):
    "Layout of the official v1 generator (reference notes §2): conv7, 2 down, R res blocks, 2 up, conv7, tanh."
    def __init__(self, conv_dim, c_dim, repeat_num):
        super().__init__()
        L, d = [nn.Conv2d(3 + c_dim, conv_dim, 7, 1, 3, bias=False), _in(conv_dim), nn.ReLU()], conv_dim
        for _ in range(2): L += [nn.Conv2d(d, 2 * d, 4, 2, 1, bias=False), _in(2 * d), nn.ReLU()]; d *= 2
        L += [_OffRes(d) for _ in range(repeat_num)]
        for _ in range(2): L += [nn.ConvTranspose2d(d, d // 2, 4, 2, 1, bias=False), _in(d // 2), nn.ReLU()]; d //= 2
        L += [nn.Conv2d(d, 3, 7, 1, 3, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*L)
    def forward(self, x, c):
        return self.main(torch.cat([x, c.view(*c.shape, 1, 1).expand(-1, -1, *x.shape[2:])], 1))

class _OffD(nn.Module):
    def __init__(self, img_size, conv_dim, c_dim, repeat_num):
        super().__init__()
        L, d = [], 3
        for i in range(repeat_num): L += [nn.Conv2d(d, conv_dim * 2**i, 4, 2, 1), nn.LeakyReLU(0.01)]; d = conv_dim * 2**i
        self.main = nn.Sequential(*L)
        self.conv1, self.conv2 = nn.Conv2d(d, 1, 3, 1, 1, bias=False), nn.Conv2d(d, c_dim, img_size // 2**repeat_num, bias=False)
    def forward(self, x): h = self.main(x); return self.conv1(h), self.conv2(h).flatten(1)

def _trained_like(m):
    "Random weights and non-trivial running statistics, as in a released file."
    torch.manual_seed(0)
    with torch.no_grad():
        for p in m.parameters(): p.normal_(0, 0.05)
    for x in [torch.randn(2, *s) for s in [(3, 32, 32)]] * 2:
        try: m(x, F.one_hot(torch.tensor([0, 2]), 5).float())
        except TypeError: m(x)
    return m

def test_official_v1_weights_load_and_match(tmp_path):
    "The released G/D layout (state dicts with IN running stats) loads with weights_only=True and computes the same as the authors' train-mode inference."
    offG, offD = _trained_like(_OffG(16, 5, 2)), _trained_like(_OffD(32, 8, 5, 4))
    assert 'main.1.running_mean' in offG.state_dict() and 'main.9.main.1.num_batches_tracked' in offG.state_dict()
    torch.save(offG.state_dict(), tmp_path/'200000-G.ckpt'); torch.save(offD.state_dict(), tmp_path/'200000-D.ckpt')
    nets = load_official_v1(tmp_path/'200000-G.ckpt', tmp_path/'200000-D.ckpt')
    x, c = torch.rand(3, 3, 32, 32) * 2 - 1, F.one_hot(torch.tensor([1, 3, 4]), 5).float()
    offG.train()   # the official test never calls .eval(): IN uses per-image statistics
    with torch.no_grad():
        torch.testing.assert_close(nets.generator(x, c), offG(x, c), rtol=1e-5, atol=1e-5)
        for a, b in zip(nets.discriminator(x), offD(x)): torch.testing.assert_close(a, b)
        offG.eval(); assert (offG(x, c) - nets.generator(x, c)).abs().max() > 1e-3   # the .eval() trap: running stats differ

def test_official_loader_refuses_bad_files(tmp_path):
    torch.save(_OffD(32, 8, 5, 4).state_dict(), tmp_path/'D.ckpt')
    with pytest.raises(CheckpointMismatch, match='use the -G.ckpt file'): load_official_v1(tmp_path/'D.ckpt')
    class Evil:
        def __reduce__(self): return (print, ('executed',))
    torch.save({'main.0.weight': torch.zeros(1), 'x': Evil()}, tmp_path/'evil.ckpt')
    with pytest.raises(UnsafeCheckpointError): load_official_v1(tmp_path/'evil.ckpt')
    sd = _OffG(16, 5, 2).state_dict(); sd['main.3.weight'] = torch.zeros(1, 1, 4, 4)
    torch.save(sd, tmp_path/'broken-G.ckpt')
    with pytest.raises(CheckpointMismatch, match='does not fit'): load_official_v1(tmp_path/'broken-G.ckpt')

# --- training on the shared machinery --------------------------------------------------------------------------------
from fastai.callback.core import Callback, CancelFitException
from stargan_v2.checkpoints import safe_load
from stargan_v2.callbacks import latest_state, ConfigMismatch
from stargan_v2.learner import TrainingStopped
from stargan_v2.v1 import train_v1, cli_train, V1Translator
import stargan_v2.v1 as v1mod
from helpers import assert_equal, Poison

TINY = V1Config.tiny(total_iters=6, save_every=3, sample_every=3, print_every=3)

def _run(out, cfg=TINY, **kw): return train_v1(cfg, out, device='cpu', verbose=False, progress=False, **kw)

class _StopAt(Callback):
    "Stop training after iteration `at` (a checkpoint is written at the stop, as on Ctrl-C)."
    order = 50
    def __init__(self, at): self.at = at
    def after_batch(self):
        if self.learn.train_iter == self.at: raise CancelFitException()

@pytest.mark.reliability
def test_v1_resume_is_bitwise_exact(tmp_path):
    _run(tmp_path/'straight')
    assert _run(tmp_path/'resumed', cbs=[_StopAt(4)]).train_iter == 4     # stops between G steps (n_critic=2: G at 2, 4, 6)
    assert _run(tmp_path/'resumed', resume=True).train_iter == 6
    for kind in ('nets', 'nets_ema', 'optims', 'state'):   # TINY keeps an EMA of G (ema_beta 0.9)
        a, b = (safe_load(tmp_path/r/'checkpoints'/f'000006_{kind}.ckpt') for r in ('straight', 'resumed'))
        assert_equal(a, b, kind)

def test_v1_ema_of_g(tmp_path):
    "ema_beta > 0: after every iteration G_ema <- lerp(G, G_ema, beta) (G only); the translator, load_translator and the export use it; 0 = official, no EMA."
    cfg = TINY.replace(total_iters=3, save_every=1, ema_beta=0.75)
    learn = _run(tmp_path/'ema', cfg)
    ck = tmp_path/'ema'/'checkpoints'
    e2, e3, g3 = safe_load(ck/'000002_nets_ema.ckpt'), safe_load(ck/'000003_nets_ema.ckpt'), safe_load(ck/'000003_nets.ckpt')
    assert list(e3) == ['generator']
    for k, v in e3['generator'].items():
        if k.endswith(('weight', 'bias')): assert torch.equal(v, torch.lerp(g3['generator'][k], e2['generator'][k], 0.75)), k
    assert not torch.equal(e3['generator']['main.0.weight'], g3['generator']['main.0.weight'])
    assert learn.make_translator().generator is learn.nets_ema.generator
    from stargan_v2.translator import load_translator
    assert torch.equal(load_translator(tmp_path/'ema')[1].generator.main[0].weight, e3['generator']['main.0.weight'])
    assert torch.equal(load_translator(ck/'000003_nets.ckpt')[1].generator.main[0].weight, e3['generator']['main.0.weight'])
    m = v1mod.export_v1_trained(tmp_path/'ema', 'x', 'test', dest=tmp_path/'exported', full_scores=False)
    assert torch.equal(safe_load(m.parent/'nets.ckpt')['generator']['main.0.weight'], e3['generator']['main.0.weight'].half())
    _run(tmp_path/'plain', cfg.replace(ema_beta=0.))
    assert not list((tmp_path/'plain'/'checkpoints').glob('*_nets_ema.ckpt'))
    assert torch.equal(load_translator(tmp_path/'plain')[1].generator.main[0].weight,
                       safe_load(tmp_path/'plain'/'checkpoints'/'000003_nets.ckpt')['generator']['main.0.weight'])
    assert V1Config.official().ema_beta == 0 and V1Config.shapes().ema_beta == 0.999 and V1Config.shapes_sa().ema_beta == 0


@pytest.mark.reliability
def test_v1_nan_guard_stops_before_the_step(tmp_path):
    with pytest.raises(TrainingStopped, match=r'Non-finite loss at iteration 5: D/loss_real=nan.*last good checkpoint is iteration 3'):
        _run(tmp_path, cbs=[Poison(4)])
    assert latest_state(tmp_path).name == '000003_state.ckpt'
    assert not (tmp_path/'checkpoints'/'000004_nets.ckpt').exists()
    g = safe_load(tmp_path/'checkpoints'/'000003_nets.ckpt')['generator']
    assert all(torch.isfinite(v).all() for v in g.values())

@pytest.mark.reliability
def test_v1_refuses_foreign_checkpoints(tmp_path):
    _run(tmp_path/'v1', TINY.replace(total_iters=3))
    with pytest.raises(ConfigMismatch, match=r'lambda_cls: checkpoint 1.0, now 2.0'):
        _run(tmp_path/'v1', TINY.replace(lambda_cls=2.), resume=True)
    from stargan_v2.core import Config
    from stargan_v2.learner import train
    train(Config.tiny(total_iters=2), tmp_path/'v2', device='cpu', verbose=False, progress=False)
    with pytest.raises(ConfigMismatch, match=r"made by method 'stargan_v2'"): _run(tmp_path/'v2', resume=True)
    with pytest.raises(ConfigMismatch, match=r"not 'stargan_v1'"): v1mod.load_translator(tmp_path/'v2')
    with pytest.raises(FileExistsError, match='resume'): _run(tmp_path/'v1')

def test_v1_training_smoke_and_translator(tmp_path):
    "A short tiny run writes the run layout, logs D and G terms every iteration, and opens as a deterministic Translator."
    learn = _run(tmp_path)
    assert learn.train_iter == 6 and sorted(learn.trainer.optims) == ['discriminator', 'generator']
    h = learn.loss_log.hist
    assert all(len(h[k]) == 6 for k in ('D/loss_real', 'D/loss_gp', 'G/loss_rec', 'G/loss_cls'))
    assert (tmp_path/'samples'/'000006_domains.png').exists() and (tmp_path/'losses.png').exists()
    from stargan_v2.translator import load_translator
    cfg, tr = load_translator(tmp_path)
    assert isinstance(tr, V1Translator) and not tr.diverse and not tr.reference_guided and cfg.model == 'stargan_v1'
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(tr(x, 0, 1, z=torch.randn(2, 4)), tr(x, 0, 1))

def test_v1_cli(tmp_path, capsys):
    assert cli_train(['--preset', 'tiny', '--out', str(tmp_path/'r'), '--iters', '2', '--device', 'cpu', '--quiet']) == 0
    assert (tmp_path/'r'/'checkpoints'/'000002_nets.ckpt').exists()
    assert cli_train(['--preset', 'tiny', '--out', str(tmp_path/'r'), '--iters', '2', '--device', 'cpu', '--quiet']) == 1
    assert 'resume' in capsys.readouterr().err
    assert cli_train(['--preset', 'tiny', '--out', str(tmp_path/'x'), '--set', 'decay=cosine']) == 2
    from stargan_v2.cli import main      # the console script's dispatch: stargan_v2 train --model stargan_v1
    assert main(['train', '--model', 'stargan_v1', '--preset', 'tiny', '--out', str(tmp_path/'c'), '--iters', '2', '--device', 'cpu', '--quiet']) == 0
    from stargan_v2.translator import run_config
    assert run_config(tmp_path/'c')['model'] == 'stargan_v1'

def test_v1_star_import_surface():
    ns = {}
    exec('from stargan_v2.v1 import *', ns)
    for name in ('V1Config', 'Generator', 'Discriminator', 'build_v1', 'v1_iteration', 'V1Trainer', 'V1Translator', 'v1_learner',
                 'train_v1', 'load_translator', 'cli_train', 'load_official_v1', 'gradient_penalty', 'classification_loss', 'v1_lr'):
        assert name in ns, name

def test_committed_v1_model():
    "The committed Shapes generator: files match the manifest, it opens as a V1Translator, and its check scores reproduce."
    from stargan_v2.trained import verify_trained, load_trained
    from stargan_v2.evaluate import shapes_scores
    m = verify_trained('stargan_v1_shapes')
    assert m['method'] == 'stargan_v1' and m['dtype'] == 'float16' and sum(f['bytes'] for f in m['files'].values()) < 2_000_000
    cfg, tr = load_trained('stargan_v1_shapes')
    assert isinstance(tr, V1Translator) and cfg.name == 'shapes'
    got = shapes_scores(tr, cfg, **m['check']['settings'])
    assert got['diversity_latent'] == 0 and got['diversity_l1_latent'] == 0
    for k in ('acc_latent', 'pos_err_latent', 'hue_err_source_latent'):
        assert got[k] == pytest.approx(m['check']['scores'][k], abs=0.05 if k.startswith('acc') else 3.), k

def test_set_none_keeps_text_settings():
    "`--set decay=none` is v1's 'no decay' mode, not Python None (lesson 12's exercise uses it); numeric fields still take None."
    from stargan_v2.learner import _coerce
    from stargan_v2.core import Config
    assert _coerce(V1Config.shapes(), 'decay=none') == ('decay', 'none')
    assert V1Config.shapes().replace(**dict([_coerce(V1Config.shapes(), 'decay=none')])).decay == 'none'
    assert _coerce(Config.shapes(), 'ds_iter=None')[1] is None

def test_fake_class_option():
    "lambda_fake > 0 (not in v1): D's head has K+1 outputs and its loss adds λ_fake·CE(D_cls(G(x,c)), K); multi-label refused."
    from stargan_v2.v1 import v1_d_loss
    cfg = V1Config.tiny(lambda_fake=0.5); nets = build_v1(cfg)
    assert nets.discriminator.conv2.out_channels == 4 and build_v1(cfg.replace(lambda_fake=0.)).discriminator.conv2.out_channels == 3
    assert V1Config.official().lambda_fake == 0 and V1Config.shapes_sa().lambda_fake == 0 and V1Config.shapes().lambda_fake > 0
    x = torch.rand(4, 3, 16, 16) * 2 - 1; y = torch.tensor([0, 1, 2, 0]); c = F.one_hot(torch.tensor([1, 2, 0, 2]), 3).float()
    torch.manual_seed(0); l1, p1 = v1_d_loss(nets, cfg, x, y, c)
    torch.manual_seed(0); l0, p0 = v1_d_loss(nets, cfg.replace(lambda_fake=0.), x, y, c)
    with torch.no_grad(): fk = F.cross_entropy(nets.discriminator(nets.generator(x, c))[1], torch.full((4,), 3))
    assert abs(p1['loss_fk'] - fk.item()) < 1e-5 and abs(l1.item() - (l0.item() + 0.5 * fk.item())) < 1e-5 and 'loss_fk' not in p0
    with pytest.raises(ValueError, match='lambda_fake'): v1_d_loss(nets, cfg, x, torch.ones(4, 3), c)

def test_copy_mask_option(tmp_path):
    "g_copy (not in v1): G(x, c) = m x + (1 - m) tanh(o), m = sigmoid(logit + copy_init) from a 4th channel; lambda_copy adds "
    "λ·mean(-log(1 - m)) over the translation and the way back; a price without the mask is refused; runs train, save and reopen."
    from stargan_v2.v1 import v1_g_loss
    from stargan_v2.translator import load_translator
    x, c = torch.rand(4, 3, 16, 16) * 2 - 1, F.one_hot(torch.tensor([1, 2, 0, 2]), 3).float()
    G = build_v1(V1Config.tiny(g_copy=True, copy_init=30.), with_d=False).generator
    assert G.main[-2].out_channels == 4 and build_v1(V1Config.tiny(g_copy=False, lambda_copy=0.), with_d=False).generator.main[-2].out_channels == 3
    with torch.no_grad(): G.main[-2].weight.mul_(1e-3)
    assert torch.allclose(G(x, c), x, atol=1e-6)                            # m = sigmoid(30): the source, copied
    G.copy_init = 0.; torch.nn.init.zeros_(G.main[-2].weight)
    assert torch.allclose(G(x, c), 0.5 * x, atol=1e-6)                     # m = 0.5, o = tanh(0) = 0
    cfg = V1Config.tiny(g_copy=True, lambda_copy=0.5); nets = build_v1(cfg)
    torch.manual_seed(0); l1, p1 = v1_g_loss(nets, cfg, x, torch.tensor([0, 1, 2, 0]), F.one_hot(torch.tensor([0, 1, 2, 0]), 3).float(), torch.tensor([1, 2, 0, 2]), c)
    torch.manual_seed(0); l0, p0 = v1_g_loss(nets, cfg.replace(lambda_copy=0.), x, torch.tensor([0, 1, 2, 0]), F.one_hot(torch.tensor([0, 1, 2, 0]), 3).float(), torch.tensor([1, 2, 0, 2]), c)
    with torch.no_grad():
        xf, lf = nets.generator.draw(x, c); _, lr = nets.generator.draw(xf, F.one_hot(torch.tensor([0, 1, 2, 0]), 3).float())
        price = ((-torch.log1p(-torch.sigmoid(lf))).mean() + (-torch.log1p(-torch.sigmoid(lr))).mean()) / 2
    assert abs(p1['loss_copy'] - price.item()) < 1e-4 and abs(l1.item() - (l0.item() + 0.5 * price.item())) < 1e-4 and 'loss_copy' not in p0
    with pytest.raises(ValueError, match='set g_copy=True too'): V1Config.tiny(g_copy=False, lambda_copy=0.1)
    with pytest.raises(ValueError, match='lambda_copy must be >= 0'): cfg.replace(lambda_copy=-1.)
    assert not V1Config.official().g_copy and not V1Config.shapes_sa().g_copy and not V1Config.tiny_sa().g_copy
    assert V1Config.shapes().g_copy and V1Config.shapes().lambda_copy > 0 and TINY.g_copy   # the preset, and CI's size of it
    learn = _run(tmp_path/'r', TINY.replace(total_iters=2, save_every=2))
    assert 'G/loss_copy' in learn.loss_log.hist
    _, tr = load_translator(tmp_path/'r')
    assert tr.generator.copy and torch.equal(tr(x, 0, 1), learn.make_translator()(x, 0, 1))
