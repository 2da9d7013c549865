"DiscoGAN (lesson 13): official parameter counts, exact resume, NaN guard, foreign checkpoints refused, the translator's choice of G, smoke training."
import json
import pytest, torch
from fastai.callback.core import Callback
from stargan_v2.core import count_params, Config
from stargan_v2.checkpoints import safe_load
from stargan_v2.callbacks import latest_state, ConfigMismatch
from stargan_v2.learner import TrainingStopped, train
from stargan_v2.translator import load_translator as load_any
from stargan_v2.discogan import (DiscoConfig, DiscoGenerator, DiscoDiscriminator, DiscoNets, DiscoTranslator, train_disco,
                                 load_translator, cli_train, bn_mode, disco_scores)

from helpers import ckpt_files, assert_equal, Poison

CFG = DiscoConfig.tiny(total_iters=6, save_every=3, sample_every=3, print_every=3)

def _run(out, cfg=CFG, **kw): return train_disco(cfg, out, device='cpu', verbose=False, progress=False, **kw)

def _files(out, it): return ckpt_files(out, it)


def test_official_param_counts():
    "The fact sheet's counts at 64 px, d = 64."
    assert count_params(DiscoGenerator(64, 64)) == 5_513_856
    assert count_params(DiscoGenerator(64, 64, extra_layers=True)) == 7_153_480
    assert count_params(DiscoDiscriminator(64, 64)) == 2_765_568
    assert count_params(DiscoNets(DiscoConfig.shapes())) == 3 * 2 * (29_568 + 166_272)   # G at full resolution, D down to 2x2
    assert count_params(DiscoNets(DiscoConfig.shapes(g_full=0, g_min_size=8, g_mid=2))) == 3 * 2 * (77_120 + 166_272)   # the earlier preset's G
    assert count_params(DiscoNets(DiscoConfig.shapes(d_min_size=4, g_full=0))) == 3 * 2 * (68_800 + 35_456)   # official nets at 16 px

def test_generator_bottleneck_option(tmp_path):
    "g_min_size / g_mid (not official): G halves only to that side, mid layers keep the size; the run's config rebuilds the same nets on loading."
    G = DiscoGenerator(32, 8, min_size=8, mid=1)
    assert G.encoder(torch.rand(2, 3, 32, 32)).shape == (2, 32, 8, 8) and G(torch.rand(2, 3, 32, 32)).shape == (2, 3, 32, 32)
    assert [type(b[0]).__name__ for b in G.decoder] == ['Conv2d', 'ConvTranspose2d', 'ConvTranspose2d']
    assert DiscoGenerator(16, 8).encoder(torch.rand(1, 3, 16, 16)).shape[-1] == 4   # the official rule: down to 4x4
    with pytest.raises(ValueError, match='below img_size'): DiscoGenerator(16, 8, min_size=16)
    with pytest.raises(ValueError, match='min_size=4'): DiscoGenerator(64, 8, extra_layers=True, min_size=8)
    G = DiscoGenerator(16, 32, full=3)                      # not official: no down/upsampling (g_full)
    assert count_params(G) == 29_568 and G.encoder(torch.rand(1, 3, 16, 16)).shape == (1, 32, 16, 16)
    with pytest.raises(ValueError, match='set g_min_size=4 g_mid=0'): DiscoConfig.tiny(g_full=2, g_min_size=8)
    cfg = CFG.replace(g_min_size=8, g_mid=2, total_iters=2, save_every=2)
    learn = _run(tmp_path, cfg)
    _, tr = load_translator(tmp_path)
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    assert torch.equal(tr(x, 0, 1), learn.make_translator()(x, 0, 1))
    assert tr.nets.generator(0, 1).encoder[-1][0].kernel_size == (3, 3)

@pytest.mark.reliability
@pytest.mark.parametrize('ema_beta', [0., 0.9])
def test_resume_is_exact(tmp_path, ema_beta):
    "6 iterations straight == 3 iterations, stop, resume, 3 more: weights, BN buffers, EMA G's, optimisers and loss history bit for bit."
    cfg = CFG.replace(ema_beta=ema_beta)
    _run(tmp_path/'straight', cfg)
    _run(tmp_path/'resumed', cfg.replace(total_iters=3))
    learn = _run(tmp_path/'resumed', cfg, resume=True)
    assert learn.train_iter == 6
    kinds = ('nets', 'optims') + (('nets_ema',) if ema_beta else ())
    assert (tmp_path/'straight'/'checkpoints'/'000006_nets_ema.ckpt').is_file() == bool(ema_beta)
    assert_equal(ckpt_files(tmp_path/'straight', 6, kinds), ckpt_files(tmp_path/'resumed', 6, kinds))
    a, b = (safe_load(p/'checkpoints'/'000006_state.ckpt')['callbacks']['loss_log'] for p in (tmp_path/'straight', tmp_path/'resumed'))
    assert_equal(a, b)


def test_ema_of_the_generators_is_what_is_sampled(tmp_path):
    "ema_beta > 0 (not official): the learner, the run's loader and the exported model all use the EMA G's, BN statistics included."
    from stargan_v2.discogan import export_disco_trained
    learn = _run(tmp_path/'run', CFG.replace(ema_beta=0.9, total_iters=4, save_every=4))
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    ema_out, raw_out = learn.make_translator()(x, 0, 1), DiscoTranslator(learn.model, learn.cfg)(x, 0, 1)
    assert not torch.allclose(ema_out, raw_out, atol=1e-4)               # after 4 iterations the average differs from the last G
    _, tr = load_translator(tmp_path/'run')
    assert torch.equal(tr(x, 0, 1), ema_out)
    _, raw = load_translator(tmp_path/'run'/'checkpoints'/'000004_nets.ckpt')   # a named file: exactly that one
    assert torch.equal(raw(x, 0, 1), raw_out)
    bn = tr.nets.pair_0_1.G_AB.encoder[1][1]
    assert torch.equal(bn.running_var, learn.nets_ema.pair_0_1.G_AB.encoder[1][1].running_var)
    assert not torch.equal(bn.running_var, learn.model.pair_0_1.G_AB.encoder[1][1].running_var)
    export_disco_trained(tmp_path/'run', tmp_path/'exp', 'test', {})
    _, te = load_translator(tmp_path/'exp')
    assert (te(x, 0, 1) - ema_out).abs().max() < 2e-2                     # fp16 on disk
    with pytest.raises(ValueError, match=r'ema_beta must be in \[0, 1\)'): CFG.replace(ema_beta=1.)

@pytest.mark.reliability
def test_nan_guard_stops_before_the_step(tmp_path):
    with pytest.raises(TrainingStopped, match=r'Non-finite loss at iteration 5: .*D/0-2_B=nan.*last good checkpoint is iteration 3'):
        _run(tmp_path, cbs=[Poison(4, lambda m: m.pair_0_2.D_B)])
    assert latest_state(tmp_path).name == '000003_state.ckpt'
    assert not (tmp_path/'checkpoints'/'000005_nets.ckpt').exists()
    nets = _files(tmp_path, 3)['nets']
    assert all(torch.isfinite(v).all() for sd in nets.values() for v in sd.values() if v.is_floating_point())

@pytest.mark.reliability
def test_foreign_checkpoints_are_refused(tmp_path):
    _run(tmp_path/'disco', CFG.replace(total_iters=3))
    with pytest.raises(ConfigMismatch, match=r"arch: checkpoint 'discogan', now 'gan'"):          # same method, other settings
        _run(tmp_path/'disco', CFG.replace(arch='gan'), resume=True)
    v2 = Config.tiny(total_iters=2, save_every=2, sample_every=2)
    train(v2, tmp_path/'v2', device='cpu', verbose=False, progress=False)
    with pytest.raises(ConfigMismatch, match=r"made by method 'stargan_v2', but this learner trains 'discogan'"):
        _run(tmp_path/'v2', resume=True)
    with pytest.raises(ValueError, match='not a DiscoGAN run'): load_translator(tmp_path/'v2')
    assert cli_train(['--preset', 'tiny', '--iters', '3', '--out', str(tmp_path/'v2'), '--resume', '--quiet']) == 1

def test_translator_picks_the_right_generator(tmp_path):
    torch.manual_seed(0)
    cfg = CFG.replace(pairs='0-1,2-0')
    nets = DiscoNets(cfg)
    tr = DiscoTranslator(nets, cfg, bn='eval')
    assert (tr.pairwise, tr.diverse, tr.reference_guided, tr.num_generators) == (True, False, False, 4)
    x = torch.rand(6, 3, 16, 16) * 2 - 1
    y_src, y_trg = torch.tensor([0, 1, 2, 0, 0, 1]), torch.tensor([1, 0, 0, 2, 0, 1])
    out = tr(x, y_src, y_trg)
    want = {(0, 1): nets.pair_0_1.G_AB, (1, 0): nets.pair_0_1.G_BA, (2, 0): nets.pair_2_0.G_AB, (0, 2): nets.pair_2_0.G_BA}
    for i, (s, t) in enumerate(zip(y_src.tolist(), y_trg.tolist())):
        if s == t: assert torch.equal(out[i], x[i]); continue
        with bn_mode(want[(s, t)], 'eval') as G, torch.no_grad(): assert torch.allclose(out[i], G((x[i:i+1] + 1) / 2)[0] * 2 - 1, atol=1e-6)
    assert torch.equal(tr(x, y_src, y_trg), out)                                    # deterministic
    assert torch.equal(tr(x, y_src, y_trg, z=torch.randn(6, 4), x_ref=x.flip(0)), out)   # z and references ignored
    assert torch.isnan(tr(x, 1, 2)).all() and not tr.has_task(1, 2) and tr.has_task(2, 0)   # a pair the run did not train: blank
    with pytest.raises(KeyError, match='no generator for domain 1 -> 2'): nets.generator(1, 2)

def test_smoke_training_cli_eval(tmp_path, capsys):
    "`stargan_v2 train --model discogan` on one named pair, then the generic loader, the Shapes scores and `stargan_v2 eval`."
    from stargan_v2.cli import main
    assert main(['train', '--model', 'discogan', '--preset', 'tiny', '--pair', 'square', 'triangle', '--iters', '4',
                 '--set', 'sample_every=2', '--out', str(tmp_path), '--quiet']) == 0
    cfg, tr = load_any(tmp_path)
    assert isinstance(tr, DiscoTranslator) and cfg.pairs == '1-2' and cfg.total_iters == 4 and cfg.gan_curriculum == 1
    assert json.loads((tmp_path/'config.json').read_text())['model'] == 'discogan'
    sc = disco_scores(tr, cfg.img_size, n_per_domain=4)
    assert set(sc['tasks']) == {'square2triangle', 'triangle2square'} and sc['diversity_l1'] == 0
    assert (tmp_path/'samples'/'000002_domains.png').exists()   # circles have no generator here: blank cells, no crash
    assert main(['eval', '--checkpoint', str(tmp_path), '--fid', 'none', '--no-lpips', '--n-per-domain', '4']) == 0
    assert json.loads((tmp_path/'eval'/'eval.json').read_text())['shapes/diversity_l1_latent'] == 0
