"Shapes scores on hand-built translators, the FID/LPIPS protocol, and `stargan_v2 eval` end to end (random weights, offline)."
import json
from dataclasses import asdict
from pathlib import Path
import numpy as np
import pytest
import torch
from torch import nn

import stargan_v2.evaluate as E
from stargan_v2.core import Config
from stargan_v2.metrics import list_images, load_images, load_lpips
from stargan_v2.models import build_nets, ema_copy, Nets
from stargan_v2.shapes import make_shapes
from stargan_v2.data import domain_names, DataError
from stargan_v2.translator import Translator, IdentityTranslator, StarGANv2Translator




@pytest.fixture(scope='module')
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp('shapes')/'shapes'
    make_shapes(r, n_train=30, n_val=8, seed=0)
    return r

@pytest.fixture(scope='module')
def mcache(tmp_path_factory): return tmp_path_factory.mktemp('mcache')


class _RealSample(Translator):
    "Reference-guided: the reference itself; latent-guided: a real training image of the target domain chosen by z."
    diverse = reference_guided = True
    def __init__(self, imgs): self.imgs, self.latent_dim, self.num_domains = imgs, 4, len(imgs)
    def translate(self, x_src, y_src, y_trg, z=None, x_ref=None):
        if x_ref is not None: return x_ref.clone()
        i = (z[:, 0].abs() * 1e4).long(); y = torch.as_tensor(y_trg).expand(len(x_src))
        return torch.stack([self.imgs[int(a)][int(b) % len(self.imgs[int(a)])] for a, b in zip(y, i)])

def _fakes(root, S=32):
    doms = domain_names(root, 'val')
    imgs = [load_images(list_images(root/'train'/d), S).float() / 127.5 - 1 for d in doms]
    return IdentityTranslator(len(doms), S), _RealSample(imgs)

class _Recolour(Translator):
    "Deterministic, one G for all domains (like StarGAN v1): keeps the shape and position, rotates the hue by 120° per target."
    def __init__(self, K=3): self.num_domains, self.calls = K, 0
    def translate(self, x_src, y_src, y_trg, z=None, x_ref=None):
        assert z is None and x_ref is None, "a deterministic translator is never given z or references"
        self.calls += 1
        k = int(torch.as_tensor(y_trg).flatten()[0])
        return x_src.roll(k, dims=1)   # permute RGB: a hue rotation of 120°·k

class _Pairwise(Translator):
    "Pairwise (like DiscoGAN): one 'generator' per ordered pair; records which pairs it was asked for."
    pairwise, num_generators = True, 6
    def __init__(self, K=3): self.num_domains, self.pairs = K, set()
    def translate(self, x_src, y_src, y_trg, z=None, x_ref=None):
        ys, yt = torch.as_tensor(y_src).expand(len(x_src)), torch.as_tensor(y_trg).expand(len(x_src))
        self.pairs |= {(int(a), int(b)) for a, b in zip(ys, yt)}
        return x_src.flip(-1)

CONTRACT = ('acc_latent', 'acc_reference', 'pos_err_latent', 'pos_err_reference', 'hue_err_reference', 'diversity_latent')

def test_shapes_scores_on_constructed_translators(root, mcache):
    cfg = Config.shapes()
    ident, copier = _fakes(root, cfg.img_size)
    si = E.shapes_scores(ident, cfg, root, n_per_domain=6, num_outs=3, cache=mcache)
    sc = E.shapes_scores(copier, cfg, root, n_per_domain=6, num_outs=3, cache=mcache)
    for k in CONTRACT: assert k in si and np.isfinite(si[k]), k
    # identity keeps the content and never translates
    assert si['acc_latent'] < .1 and si['acc_reference'] < .1
    assert si['pos_err_latent'] < .5 and si['pos_err_reference'] < .5 and si['size_err_latent'] < .5
    assert si['diversity_l1_latent'] == pytest.approx(0, abs=1e-7) and si['patterns_per_source_latent'] == 1   # the z's change nothing
    # copy-the-reference: perfect style, no content; latent outputs are real target images
    assert sc['acc_reference'] > .9 and sc['hue_err_reference'] < 3 and sc['pattern_acc_reference'] > .8 and sc['pattern_kappa_reference'] > .8
    assert sc['pos_err_reference'] > 3
    assert sc['acc_latent'] > .9 and sc['hue_in_domain_latent'] > .8 and sc['pattern_tv_latent'] < .4
    assert sc['diversity_latent'] > 5 and sc['diversity_l1_latent'] > .01 and sc['patterns_per_source_latent'] > 1.5
    assert sc['shapes_fid_latent'] < si['shapes_fid_latent'] / 3
    assert set(sc['tasks']) == {t[2] for t in E.tasks(domain_names(root, 'val'))}

def test_pattern_kappa_discounts_chance():
    refs = ['solid'] * 50 + ['stripes'] * 20 + ['dots'] * 15 + ['checks'] * 15
    assert E.pattern_kappa(refs, refs) == 1
    assert E.pattern_kappa(['solid'] * 100, refs) == 0            # agrees half the time by always answering 'solid'
    shuffled = list(np.random.default_rng(0).permutation(refs))
    assert abs(E.pattern_kappa(shuffled, refs)) < .15              # independent of the reference
    assert E.pattern_kappa(['dots'] * 50 + ['solid'] * 50, ['solid'] * 50 + ['dots'] * 50) == -1   # always the other one
    assert E.pattern_kappa([None, float('nan'), 'dots'], [None, None, 'dots']) == 1                # no object = one category

def test_shapes_scores_seeded_and_checked(root, mcache):
    cfg = Config.tiny()
    nets = build_nets(cfg).eval()
    a = E.shapes_scores(nets, cfg, root, n_per_domain=2, num_outs=2, seed=3, cache=mcache)
    b = E.shapes_scores(nets, cfg, root, n_per_domain=2, num_outs=2, seed=3, cache=mcache)
    np.testing.assert_equal(a, b)   # NaN-aware: a random net's blank outputs have no position
    with pytest.raises(ValueError, match='the model has 2'):
        E.shapes_scores(build_nets(cfg.replace(num_domains=2)).eval(), cfg, root, n_per_domain=2, cache=mcache)

def test_circular_stats():
    assert E.circ_mean([350, 10]) % 360 == pytest.approx(0, abs=1e-9)
    h = np.random.default_rng(0).normal(100, 15, 50000)
    assert E.circ_std(h) == pytest.approx(15, abs=.3) and E.circ_std(h + 300) == pytest.approx(E.circ_std(h), abs=1e-6)

def test_ref_sampler_is_shuffled_passes():
    s = E._RefSampler(10, 4, torch.Generator().manual_seed(0))
    first = torch.cat([s(4), s(4)])
    assert len(first.unique()) == 8                 # one pass without repeats, drop_last
    assert s(2).shape == (2,)


class _Toy(nn.Module):
    tag = 'toy'
    def forward(self, x): return nn.functional.adaptive_avg_pool2d(x.float().clamp(-1, 1), 3).flatten(1)

def test_evaluate_protocol_and_cache(root, tmp_path):
    cfg = Config.tiny()
    nets = build_nets(cfg).eval()
    kw = dict(extractors={'official': _Toy(), 'standard': _Toy()}, lp=load_lpips(pretrained=False), num_outs=3, bs=2,
              n_per_domain=3, cache=tmp_path, verbose=False, seed=1)
    r = E.evaluate(nets, cfg, root, **kw)
    assert len(list(tmp_path.glob('*.npz'))) == 3   # one per target domain (same tag for both toys)
    assert r == E.evaluate(nets, cfg, root, **kw)
    for f in ('FID_official', 'FID_standard', 'LPIPS'):
        for m in ('latent', 'reference'):
            per = [v for k, v in r.items() if k.startswith(f'{f}_{m}/') and not k.endswith('/mean')]
            assert len(per) == 6 and r[f'{f}_{m}/mean'] == pytest.approx(np.mean(per))
    assert r != E.evaluate(nets, cfg, root, **(kw | {'seed': 2}))

def _run_dir(tmp_path, cfg):
    run = tmp_path/'run'; (run/'checkpoints').mkdir(parents=True)
    (run/'config.json').write_text(json.dumps(asdict(cfg)))
    from stargan_v2.checkpoints import save_nets
    save_nets(ema_copy(build_nets(cfg)), run/'checkpoints'/'000010_nets_ema.ckpt')
    return run

def test_cli_eval_end_to_end(tmp_path, capsys, monkeypatch):
    "`stargan_v2 eval` on a Shapes checkpoint: Shapes scores, both FIDs (random Inception) and LPIPS, both modes."
    monkeypatch.setenv('STARGAN_V2_CACHE', str(tmp_path/'cache'))
    root = tmp_path/'shapes'; make_shapes(root, n_train=3, n_val=2, seed=0)   # Inception on a CPU is slow: few images
    run = _run_dir(tmp_path, Config.tiny())
    from stargan_v2.cli import main
    rc = main(['eval', '--checkpoint', str(run), '--data', str(root), '--random-weights', '--n-per-domain', '1',
               '--num-outs', '2', '--save-images', '--batch-size', '8'])
    assert rc == 0
    out = capsys.readouterr().out
    assert 'Shapes scores' in out and 'acc_latent' in out and 'FID_official_latent' in out
    res = json.loads((run/'eval'/'eval.json').read_text())
    for k in ('shapes/acc_latent', 'shapes/hue_err_reference', 'FID_official_latent/mean', 'FID_standard_reference/mean',
              'LPIPS_latent/mean', 'LPIPS_reference/mean', 'WARNING'): assert k in res, k
    assert np.isfinite(res['FID_standard_latent/circle2square']) and res['FID_official_reference/mean'] > 0
    pngs = sorted((run/'eval'/'images'/'latent'/'circle2square').glob('*.png'))
    assert [p.name for p in pngs] == ['0000_00.png', '0000_01.png']
    assert (run/'eval'/'eval.md').read_text().startswith('| task |')
    assert len(list((tmp_path/'cache'/'fid_stats').glob('*.npz'))) == 6   # 2 flavours × 3 target domains

def test_cli_eval_errors(tmp_path):
    with pytest.raises(SystemExit): E.cli_eval([])                                   # --checkpoint is required
    run = _run_dir(tmp_path, Config.tiny())
    with pytest.raises(DataError, match='does not exist'):
        E.cli_eval(['--checkpoint', str(run), '--data', str(tmp_path/'nowhere'), '--random-weights'])


def test_deterministic_and_pairwise_translators_are_scored(root, mcache, tmp_path):
    "Hand-built deterministic and pairwise translators through shapes_scores and the FID/LPIPS protocol (random Inception/AlexNet)."
    det, pw = _Recolour(), _Pairwise()
    sd = E.shapes_scores(det, 32, root, n_per_domain=4, num_outs=10, cache=mcache)
    assert det.calls == 6                                       # once per task: not num_outs times, and no second pass for 'reference'
    assert sd['diversity_latent'] == 0 and sd['diversity_l1_latent'] == 0 and sd['patterns_per_source_latent'] == 1
    assert sd['acc_latent'] < .1 and sd['pos_err_latent'] < .5      # shape and position kept
    assert sd['hue_err_source_latent'] > 60                     # the colour changed (RGB permutation ≈ 120° hue rotation)
    assert sd['hue_corr_source_latent'] > .9                    # ...but follows the source's hue exactly, rotated
    assert sd['hue_err_reference'] > 20                         # it ignores the references
    sp = E.shapes_scores(pw, 32, root, n_per_domain=4, cache=mcache)
    assert pw.pairs == {(a, b) for a in range(3) for b in range(3) if a != b}   # told every ordered pair, right sources
    assert sp['pos_err_latent'] > 1 and sp['diversity_latent'] == 0     # mirrored: the position moves; deterministic
    from stargan_v2.metrics import inception_features
    ext = {'official': inception_features('official', None, 'cpu')}
    kw = dict(extractors=ext, lp=load_lpips(pretrained=False), num_outs=3, bs=4, n_per_domain=2, cache=tmp_path, verbose=False)
    cfg = Config.tiny()
    rd, rp = E.evaluate(det, cfg, root, **kw), E.evaluate(pw, cfg, root, **kw)
    for r in (rd, rp):
        assert not any('reference' in k for k in r)              # neither is reference-guided: one 'latent' row per task
        assert r['LPIPS_latent/mean'] == 0 and np.isfinite(r['FID_official_latent/mean'])
