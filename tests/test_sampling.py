"Sampling across modules: FAN masks, videos on disk, and `stargan_v2 sample` on saved checkpoints."
import json, types
from dataclasses import asdict
from pathlib import Path
import numpy as np
import pytest
import torch
from PIL import Image
import imageio.v3 as iio

from stargan_v2.core import Config, set_seed, to_uint8
from stargan_v2.models import build_nets, ema_copy, Nets
from stargan_v2.translator import StarGANv2Translator, IdentityTranslator
from stargan_v2.shapes import shapes_path
from stargan_v2.data import load_domain_images
from stargan_v2.sampling import (cycle_strip, translate_latent, reference_grid, latent_grid, latent_grids,
                                 reference_video_frames, interp_frames, write_mp4, write_gif,
                                 mean_styles, make_z, interp_alphas, cli_sample, grid_to_uint8)


@pytest.fixture(scope='module')
def tiny():
    set_seed(0); cfg = Config.tiny()
    return cfg, build_nets(cfg).eval()


class _FakeFAN(torch.nn.Module):
    "Records which images it was asked for masks of; returns masks that depend on the image."
    def __init__(self): super().__init__(); self.seen = []
    def get_heatmap(self, x):
        self.seen.append(x.detach().clone())
        m = (x.mean(1, keepdim=True) + 1) / 2
        return m, m * 0.5


class _SpyG(torch.nn.Module):
    "Wraps a generator and records the masks of every call; claims a face-mask path (w_hpf > 0) so `Nets.masks` asks the FAN."
    def __init__(self, g, w_hpf=1.): super().__init__(); self.g, self.masks, self.w_hpf = g, [], w_hpf
    def forward(self, x, s, masks=None): self.masks.append(masks); return self.g(x, s)


def _with_fan(nets):
    return Nets(_SpyG(nets.generator), nets.mapping_network, nets.style_encoder, None, _FakeFAN())


def test_masks_follow_the_official_sampler(tiny):
    cfg, nets = tiny
    x, y, _ = load_domain_images(shapes_path()/'val', cfg.img_size, n_per_domain=1)
    fnets = _with_fan(nets)
    cycle_strip(fnets, x, y, x.flip(0), y.flip(0))
    # translation: masks of the sources; reconstruction: masks recomputed from the translation
    assert len(fnets.fan.seen) == 2 and torch.equal(fnets.fan.seen[0], x)
    x_fake = StarGANv2Translator(nets)(x, y, y.flip(0), x_ref=x.flip(0))
    torch.testing.assert_close(fnets.fan.seen[1], x_fake)
    assert all(m is not None for m in fnets.generator.masks)
    torch.testing.assert_close(fnets.generator.masks[1][0], (x_fake.mean(1, keepdim=True) + 1) / 2)
    # latent and reference translations and the grids pass the sources' masks too (ψ != 1 included)
    fnets.generator.masks.clear(); fnets.fan.seen.clear()
    translate_latent(fnets, x, 0, seed=0); reference_grid(fnets, x, x, y)
    latent_grid(fnets, x, 1, n_z=2, psi=.5, s_avg=mean_styles(nets, n=100))
    assert len(fnets.generator.masks) == 3 and all(m is not None for m in fnets.generator.masks)
    assert all(torch.equal(s, x.repeat(len(s) // len(x), 1, 1, 1)) for s in fnets.fan.seen)   # the sources, one batch per grid
    assert len(fnets.fan.seen) == 3
    m_grid = fnets.generator.masks[1][0]                             # reference grid: 3 rows of the 3 sources' masks
    torch.testing.assert_close(m_grid, ((x.mean(1, keepdim=True) + 1) / 2).repeat(3, 1, 1, 1))
    # without a face-mask path (w_hpf = 0) no masks are passed, FAN or not
    spy = Nets(_SpyG(nets.generator, w_hpf=0.), nets.mapping_network, nets.style_encoder, None, _FakeFAN())
    translate_latent(spy, x, 0, seed=0)
    assert spy.generator.masks == [None] and spy.fan.seen == []


def test_videos_round_trip_with_odd_sizes(tmp_path):
    yy, xx = np.mgrid[:37, :45]
    im = np.stack([xx * 5, yy * 6, (xx + yy) * 3], -1).clip(0, 255).astype(np.uint8)   # smooth: survives yuv420p
    fr = np.stack([np.roll(im, 3 * i, 1) for i in range(5)])    # every frame different (GIF merges repeats)
    back = iio.imread(write_mp4(fr, tmp_path/'v.mp4', fps=10), plugin='FFMPEG', index=None)
    assert back.shape == (5, 48, 48, 3)                         # padded to multiples of 16
    assert np.abs(back[:, :37, :45].astype(int) - fr).mean() < 8
    assert np.abs(back[:, 37:].astype(int) - 255).mean() < 10   # white padding
    g = iio.imread(write_gif(fr, tmp_path/'v.gif'), index=None)
    assert g.shape[:3] == (5, 37, 45)


def test_reference_video_walks_same_domain_pairs(tiny):
    cfg, nets = tiny
    x, y, _ = load_domain_images(shapes_path()/'val', cfg.img_size, n_per_domain=3)
    al = [0., .5, 1.]
    fr = reference_video_frames(nets, x[:2], x, y, alphas=al, n_last=4)
    pairs = [(i, i + 1) for i in range(len(y) - 1) if y[i] == y[i + 1]]   # a change of domain is skipped
    assert len(pairs) == 6 and len(fr) == len(pairs) * len(al) + 4
    s_ref = nets.style(y, x_ref=x)
    for k, (i, j) in enumerate(pairs):
        want = interp_frames(nets, x[:2], s_ref[i], s_ref[j], al, x0=x[i], x1=x[j])
        np.testing.assert_array_equal(fr[k * 3:(k + 1) * 3], want)
    np.testing.assert_array_equal(fr[-1], fr[-5])                       # the last frame is held


def _run_dir(tmp_path, cfg, nets, with_config=True):
    from stargan_v2.checkpoints import save_nets
    run = tmp_path/'run'; (run/'checkpoints').mkdir(parents=True)
    if with_config: (run/'config.json').write_text(json.dumps(asdict(cfg)))
    save_nets(ema_copy(nets), run/'checkpoints'/'000005_nets_ema.ckpt')
    save_nets(ema_copy(nets), run/'checkpoints'/'000010_nets_ema.ckpt')
    return run


def test_cli_sample_shapes_checkpoint(tmp_path, capsys):
    "`stargan_v2 sample` on a checkpoint of Shapes-domain nets (CPU): grids and videos with the right layout and content."
    from stargan_v2.cli import main
    set_seed(1); cfg = Config.tiny(); nets = build_nets(cfg).eval()   # Config.shapes() works the same, 10x slower on CPU
    run, val, out = _run_dir(tmp_path, cfg, nets), shapes_path()/'val', tmp_path/'out'
    rc = main(['sample', '--checkpoint', str(run), '--src', str(val), '--ref', str(val), '--out', str(out),
               '--n-src', '2', '--n-ref', '2', '--n-latent', '3', '--psi', '1', '0.7', '--gif', '--mp4', '--device', 'cpu',
               '--latent-video'])
    assert rc == 0
    S = cfg.img_size
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ['reference.jpg', 'cycle.jpg', 'video_ref.mp4', 'video_ref.gif'] +
        [f'video_latent_{d}.{e}' for d in ('circle', 'square', 'triangle') for e in ('mp4', 'gif')] +
        [f'latent_{d}_psi{p}.jpg' for d in ('circle', 'square', 'triangle') for p in ('1', '0.7')])
    assert Image.open(out/'reference.jpg').size == (7 * S, 7 * S)
    assert Image.open(out/'latent_square_psi0.7.jpg').size == (7 * S, 4 * S)
    assert Image.open(out/'cycle.jpg').size == (6 * S, 4 * S)
    # the reference grid's cell (row 2, column 3) is the translation of source 2 with reference 1's style
    x, y, _ = load_domain_images(val, S, n_per_domain=2)
    want = to_uint8(StarGANv2Translator(nets)(x[2:3], y[2:3], y[1:2], x_ref=x[1:2]))[0].astype(int)
    got = np.asarray(Image.open(out/'reference.jpg')).astype(int)[2*S:3*S, 3*S:4*S]
    assert np.abs(got - want).mean() < 6, 'JPEG cell differs from the direct translation'
    # video: 3 same-domain pairs × 31 frames + 10 held frames
    v = iio.imread(out/'video_ref.mp4', plugin='FFMPEG', index=None)
    assert v.shape[0] == 3 * 31 + 10 and v.shape[1] % 16 == 0 and v.shape[2] % 16 == 0
    assert iio.imread(out/'video_latent_square.mp4', plugin='FFMPEG', index=None).shape[0] == 3 * 31 + 10
    assert str(out/'reference.jpg') in capsys.readouterr().out
    # every domain's latent grid uses the same seeded codes (the official debug layout): row 2 of 'square' is code 1 in domain 1
    lat = np.asarray(Image.open(out/'latent_square_psi1.jpg')).astype(int)[2*S:3*S, 1*S:2*S]
    want = to_uint8(translate_latent(nets, x[:1], 1, z_trg=make_z(3, cfg.latent_dim, seed=0)[1:2]))[0].astype(int)
    assert np.abs(lat - want).mean() < 6


def test_cli_sample_rejects_wrong_domains(tmp_path, capsys):
    set_seed(0); cfg = Config.tiny(); nets = build_nets(cfg).eval()
    run = _run_dir(tmp_path, cfg, nets)
    src = tmp_path/'two'
    for d in ('a', 'b'):
        (src/d).mkdir(parents=True); Image.new('RGB', (16, 16), (9, 9, 9)).save(src/d/'0.png')
    rc = cli_sample(['--checkpoint', str(run), '--src', str(src), '--ref', str(src), '--out', str(tmp_path/'o'), '--device', 'cpu'])
    assert rc == 2 and 'has 2 domains' in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match='not a folder'):
        cli_sample(['--checkpoint', str(run), '--src', str(tmp_path/'nope'), '--ref', str(src), '--out', str(tmp_path/'o')])


class _NoMasks(torch.nn.Module):
    "A FAN stand-in that gives no masks: G skips its high-pass path."
    def get_heatmap(self, x): return None


class _TinyFAN(torch.nn.Module):
    "Stands in for the 6M-parameter FAN (too slow for CI): masks from image brightness, at 256 px like the real one."
    def __init__(self): super().__init__(); self.calls = 0
    def get_heatmap(self, x):
        self.calls += 1
        m = torch.nn.functional.interpolate((x.mean(1, keepdim=True) + 1) / 2, size=256, mode='bilinear')
        return m, m.clamp(0.2, 0.8)


def test_cli_sample_celeba_like_checkpoint_gets_fan_masks(tmp_path, monkeypatch, capsys):
    """An official-style w_hpf>0 file (no config.json, no FAN): `sample` infers the config, loads a FAN (here a stand-in
    for wing.ckpt) and G uses the masks."""
    import stargan_v2.fan, stargan_v2.checkpoints
    set_seed(0); cfg = Config.tiny(img_size=32, w_hpf=1.); nets = build_nets(cfg).eval()
    run = _run_dir(tmp_path, cfg, nets, with_config=False)/'checkpoints'/'000010_nets_ema.ckpt'   # like the official file
    fan = _TinyFAN()
    monkeypatch.setattr(stargan_v2.fan, 'load_fan', lambda path=None, **kw: fan)
    monkeypatch.setattr(stargan_v2.checkpoints, 'load_fan', lambda *a, **kw: (_ for _ in ()).throw(FileNotFoundError('no cache')), raising=False)
    val, out = shapes_path()/'val', tmp_path/'out'
    rc = cli_sample(['--checkpoint', str(run), '--src', str(val), '--ref', str(val), '--out', str(out), '--n-src', '1',
                     '--n-ref', '1', '--n-latent', '2', '--no-video', '--device', 'cpu', '--wing', 'unused.ckpt'])
    assert rc == 0 and fan.calls == 1 + 1 + 2      # reference grid, the latent grids (one batch, all domains), cycle strip (x_src and x_fake)
    # the grid really went through the high-pass path: it differs from the same nets without masks
    x, y, _ = load_domain_images(val, 32, n_per_domain=1)
    with_masks = np.asarray(Image.open(out/'reference.jpg')).astype(int)
    no_masks = reference_grid(Nets(nets.generator, nets.mapping_network, nets.style_encoder, None, _NoMasks()), x, x, y)
    assert np.abs(with_masks - grid_to_uint8(no_masks)).mean() > 2
    fnets = Nets(nets.generator, nets.mapping_network, nets.style_encoder, None, _TinyFAN())
    assert np.abs(with_masks - grid_to_uint8(reference_grid(fnets, x, x, y))).mean() < 3


def test_nets_with_a_mask_path_and_no_fan_refuse_to_sample():
    "One rule for masks (`Nets.masks`): w_hpf > 0 without a FAN is an error, not a silent translation without masks."
    set_seed(0); nets = build_nets(Config.tiny(img_size=32, w_hpf=1.)).eval()
    with pytest.raises(ValueError, match='no FAN is attached'):
        translate_latent(nets, torch.zeros(1, 3, 32, 32), 0, seed=0)


def _fake_method(monkeypatch, tr, img_size):
    "Register a method 'fake' whose runs open as `tr` (what `stargan_v1`/`discogan` runs do through their own modules)."
    import sys, stargan_v2.translator as T
    mod = types.ModuleType('fake_method_for_tests')
    mod.load_translator = lambda path, device=None: (types.SimpleNamespace(img_size=img_size, model='fake'), tr)
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    monkeypatch.setitem(T.METHODS, 'fake', mod.__name__)


def test_cli_sample_deterministic_run_writes_the_domain_grid(tmp_path, monkeypatch, capsys):
    "A run of a deterministic method: `sample` writes one row per target domain and the cycle strip, and says what it skipped."
    S = 16
    _fake_method(monkeypatch, IdentityTranslator(3, S), S)
    run = tmp_path/'run'; run.mkdir(); (run/'config.json').write_text(json.dumps({'model': 'fake', 'img_size': S}))
    val, out = shapes_path()/'val', tmp_path/'out'
    rc = cli_sample(['--checkpoint', str(run), '--src', str(val), '--ref', str(val), '--out', str(out), '--n-src', '2',
                     '--n-ref', '1', '--psi', '1', '0.5', '--latent-video', '--device', 'cpu'])
    cap = capsys.readouterr()
    assert rc == 0 and sorted(p.name for p in out.iterdir()) == ['cycle.jpg', 'domains.jpg']
    assert Image.open(out/'domains.jpg').size == (7 * S, 4 * S)   # blank + 6 sources; top row + 3 target domains
    note = [l for l in cap.err.splitlines() if l.strip()]
    assert len(note) == 1 and 'no latent grids or videos' in note[0]
    x, y, _ = load_domain_images(val, S, n_per_domain=2)
    got = np.asarray(Image.open(out/'domains.jpg')).astype(int)[2*S:3*S, 3*S:4*S]   # target domain 1, source 2
    assert np.abs(got - to_uint8(x[2:3])[0].astype(int)).mean() < 6      # the identity: the source itself
