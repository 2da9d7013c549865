"The probe scripts of issues #13, #14 and #19 (benchmarks/v1_probes.py, disco_probes.py, pattern_probes.py): what they measure works."
import importlib.util, json, math
import pytest
from pathlib import Path
import torch
import stargan_v2.v1 as V
from stargan_v2.v1 import V1Config, train_v1

def _load(name):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1]/'benchmarks'/f'{name}.py')
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); return m

def _stripes(angle_deg:float, phase:float, period:float=4.5, n:int=32) -> torch.Tensor:
    "(1,3,n,n) grey stripes in [-1,1]: the kind of pattern a 32-px Shapes fill carries."
    c = torch.arange(n) + 0.5
    y, x = torch.meshgrid(c, c, indexing='ij')
    a = math.radians(angle_deg)
    u = (x * math.cos(a) + y * math.sin(a)) / period + phase
    return ((u % 1) < 0.5).float().mul(0.6).sub(0.3).expand(3, n, n)[None]

def test_texture_map_ignores_phase_but_not_pattern():
    P = _load('pattern_probes')
    t = lambda im: P.texture_map(im)[..., 1:-1, 1:-1]   # interior cells (the border is padded)
    a, b = t(_stripes(0, 0.)), t(_stripes(0, 0.25))      # the same stripes, a quarter period apart
    assert (a - b).abs().mean() < 0.1 * a.abs().mean()   # ... give (almost) the same texture
    assert P.texture_loss(_stripes(0, 0.), _stripes(0, 0.25)) < 0.1 * P.texture_loss(_stripes(0, 0.), torch.zeros(1, 3, 32, 32))
    assert t(torch.zeros(1, 3, 32, 32)).abs().max() < 1e-2   # a flat fill has no texture
    h, v = t(_stripes(0, 0.)).mean((0, 2, 3)), t(_stripes(90, 0.)).mean((0, 2, 3))
    assert h.argmax() != v.argmax() and (h - v).abs().max() > 0.05   # orientation is kept

def test_v1_probes_fooled_and_fake_class(tmp_path, monkeypatch, capsys):
    P = _load('v1_probes')
    cfg = V1Config.shapes(total_iters=4, save_every=4, sample_every=4, print_every=2, lambda_fake=0.)   # v1's own D
    train_v1(cfg, tmp_path/'plain', device='cpu', verbose=False, progress=False)
    P.main(['fooled', str(tmp_path/'plain')])
    out = capsys.readouterr().out
    assert 'iteration 4' in out and '== EMA G' in out and '== raw G' in out
    assert sum(l.startswith(('circle->', 'square->', 'triangle->')) for l in out.splitlines()) == 12   # 6 tasks × 2 G's
    monkeypatch.setattr(V, 'v1_g_loss', V.v1_g_loss)   # the probe patches it; restored after the test
    P.main(['fake-class', '--lambda-id', '1', '--set', 'total_iters=4', 'save_every=4', 'sample_every=4', 'print_every=2',
            '--out', str(tmp_path/'fake')])
    log = (tmp_path/'fake'/'log.txt').read_text()
    assert 'D/loss_fk' in log and 'G/loss_id' in log
    sd = torch.load(tmp_path/'fake'/'checkpoints'/'000004_nets.ckpt', weights_only=True)
    assert sd['discriminator']['conv2.weight'].shape[0] == cfg.num_domains + 1   # the "fake" class

def test_disco_probes_arch_and_round_trip(tmp_path, capsys):
    "benchmarks/disco_probes.py (issue #14): the full-resolution G and the lr decay are what train, and the round trip runs on that run."
    import stargan_v2.discogan as dg
    P = _load('disco_probes')
    P.main(['arch', '--g', 'full', '--g-width', '8', '--g-layers', '2', '--decay-start', '4', '--n', '4', '--out', str(tmp_path/'full'),
            '--set', 'total_iters=8', 'save_every=8', 'sample_every=8', 'print_every=4', 'batch_size=4', 'val_batch_size=4'])
    assert dg.DiscoNets is not None and dg.disco_iteration.__name__ == 'disco_iteration'   # the patches are undone
    sd = torch.load(tmp_path/'full'/'checkpoints'/'000008_nets.ckpt', weights_only=True)
    g = sd['pair_0_1']
    assert g['G_AB.encoder.0.0.weight'].shape == (8, 3, 3, 3) and g['G_AB.decoder.0.0.weight'].shape == (3, 8, 3, 3)   # no stride-2 layer anywhere
    assert not any('ConvTranspose' in type(m).__name__ for m in P.FullResGenerator(8, 2).modules())
    opt = torch.load(tmp_path/'full'/'checkpoints'/'000008_optims.ckpt', weights_only=True)
    lr = dg.DiscoConfig.shapes().lr
    for k in ('generator', 'discriminator'):   # the last iteration (7) ran at lr * (1 - 3/4)
        assert math.isclose(opt[k]['param_groups'][0]['lr'], 0.25 * lr, rel_tol=1e-6)
    P.main(['round-trip', str(tmp_path/'full'), '--g', 'full', '--g-width', '8', '--g-layers', '2', '--n', '4'])
    out = capsys.readouterr().out
    assert 'iteration": 8' in out and sum(l.startswith(('circle->', 'square->', 'triangle->')) for l in out.splitlines()) == 4

def test_disco_probes_ema_averages_every_g(tmp_path, capsys):
    "disco_probes.py arch --ema: EMA copies of every G (weights and BN running statistics), scored next to the raw G at each checkpoint."
    import stargan_v2.discogan as dg
    P = _load('disco_probes')
    cfg = dg.DiscoConfig.tiny(total_iters=6, save_every=3)
    ema = P.GEma([0.5], every=3)
    learn = dg.train_disco(cfg, tmp_path/'run', device='cpu', verbose=False, progress=False, cbs=[ema])
    assert sorted(ema.snaps) == [3, 6]
    live, avg = learn.model.state_dict(), ema.ema[0.5].state_dict()
    gs = [k for k in live if '.G_' in k]
    assert any('running_var' in k for k in gs)
    for k in gs:
        if live[k].is_floating_point(): assert not torch.equal(live[k], avg[k]), k   # averaged, not copied (BN statistics too)
        else: assert torch.equal(live[k], avg[k]), k                                # counters copied
    assert torch.equal(ema.snaps[6][0.5]['pair_0_1.G_AB.encoder.0.0.weight'], avg['pair_0_1.G_AB.encoder.0.0.weight'])
    P.main(['arch', '--ema', '0.5', '--n', '4', '--out', str(tmp_path/'probe'),
            '--set', 'total_iters=6', 'save_every=3', 'sample_every=6', 'print_every=3', 'batch_size=4', 'val_batch_size=4', 'dim=8'])
    out = capsys.readouterr().out
    assert '"iteration": 3' in out and '"ema0.5": [' in out and '"which": "raw"' in out and 'every Shapes score of ema0.5' in out

def test_v1_probes_g_skip_starts_from_the_identity(tmp_path, monkeypatch):
    "v1_probes.py fake-class --g-skip: G(x, c) = tanh(atanh(0.999 x) + h), so a G whose last conv is zero returns 0.999 x."
    P = _load('v1_probes')
    monkeypatch.setattr(V, 'v1_g_loss', V.v1_g_loss); monkeypatch.setattr(V.Generator, 'draw', V.Generator.draw)
    P.main(['fake-class', '--g-skip', '--out', str(tmp_path/'skip'),
            '--set', 'total_iters=2', 'save_every=2', 'sample_every=2', 'print_every=1', 'batch_size=4'])
    G = V.Generator(8, 3, 1, down=0)
    torch.nn.init.zeros_(G.main[-2].weight)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.allclose(G(x, torch.eye(3)[:2]), 0.999 * x, atol=1e-5)

def test_v1_probes_g_mask_is_the_library_copy_mask(tmp_path, monkeypatch):
    "v1_probes.py fake-class --g-mask OFFSET --mask-price W sets V1Config.g_copy / copy_init / lambda_copy; the price is logged; it needs --g-mask."
    P = _load('v1_probes')
    monkeypatch.setattr(V, 'v1_g_loss', V.v1_g_loss)
    P.main(['fake-class', '--g-mask', '2', '--mask-price', '0.1', '--out', str(tmp_path/'price'),
            '--set', 'total_iters=2', 'save_every=2', 'sample_every=2', 'print_every=1', 'batch_size=4'])
    cfg = V.V1Config.from_dict(json.loads((tmp_path/'price'/'config.json').read_text()))
    assert (cfg.g_copy, cfg.copy_init, cfg.lambda_copy) == (True, 2., 0.1)
    sd = torch.load(tmp_path/'price'/'checkpoints'/'000002_nets.ckpt', weights_only=True)
    assert sd['generator']['main.%d.weight' % (len(V.build_v1(cfg).generator.main) - 2)].shape[0] == 4   # the copy mask's channel
    logged = [float(l.split('G/loss_copy ')[1].split()[0]) for l in (tmp_path/'price'/'log.txt').read_text().splitlines() if 'G/loss_copy' in l]
    assert logged and all(1.5 < v < 4 for v in logged)     # m starts near sigmoid(2): -log(1 - 0.88) = 2.1 nats
    with pytest.raises(SystemExit, match='needs --g-mask'): P.main(['fake-class', '--mask-price', '1', '--out', str(tmp_path/'x')])
    P.main(['fake-class', '--out', str(tmp_path/'plain'), '--set', 'total_iters=1', 'save_every=1', 'sample_every=1', 'batch_size=4'])
    assert not V.V1Config.from_dict(json.loads((tmp_path/'plain'/'config.json').read_text())).g_copy   # v1's G without the flag

def test_budget_times_the_real_loop_and_reads_manifests(tmp_path, capsys):
    "benchmarks/budget.py: s/iteration from the library's training loop, the recorded s/iteration from a manifest, one row per preset."
    from stargan_v2.v1 import V1Config
    P = _load('budget')
    assert P.time_preset(V1Config.tiny(), train_v1, iters=2, warmup=1) > 0
    (tmp_path/'a').mkdir(); (tmp_path/'a'/'manifest.json').write_text('{"iterations": 100, "train_cpu_seconds": 25.0, "train_seconds": 40}')
    (tmp_path/'b').mkdir(); (tmp_path/'b'/'manifest.json').write_text('{"iters": 100, "scores": {"train_wall_seconds": 40.0}}')
    assert P.recorded(tmp_path/'a') == (0.25, 'cpu') and P.recorded(tmp_path/'b') == (0.4, 'wall') and P.recorded(None) == (None, '')
    P.main(['--only', 'v1 shapes', '--iters', '1', '--warmup', '1'])
    rows = [l for l in capsys.readouterr().out.splitlines() if l.startswith('v1 shapes ')]
    assert len(rows) == 1 and rows[0].split()[2] == str(V1Config.shapes().total_iters)
