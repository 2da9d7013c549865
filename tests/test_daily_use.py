"Daily-use paths (issue #17): offline downloads fail cleanly, --root/--cache, progress output, LICENSE, Colab-safe notebooks."
import contextlib, io, json, os, re, tomllib
from pathlib import Path
import pytest
from stargan_v2.core import download_url, progress, ByteProgress
from stargan_v2.data import cli_data
from stargan_v2.pretrained import cli_weights

ROOT = Path(__file__).resolve().parents[1]

def _run(fn, argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): rc = fn(argv)
    return rc, out.getvalue(), err.getvalue()

@pytest.mark.parametrize('flag', ['--root', '--cache'])
def test_weights_download_offline_is_one_clear_line(tmp_path, flag):
    rc, _, err = _run(cli_weights, ['download', 'wing', flag, str(tmp_path), '--url', (tmp_path/'nowhere.ckpt').as_uri()])
    assert rc == 1 and err.startswith('stargan_v2 weights: Could not download') and 'Traceback' not in err

@pytest.mark.parametrize('flag', ['--root', '--cache'])
def test_data_download_accepts_root_and_cache(tmp_path, flag):
    rc, _, err = _run(cli_data, ['download', 'afhq', flag, str(tmp_path/'c'), '--url', (tmp_path/'nowhere.zip').as_uri()])
    assert rc == 1 and err.startswith('stargan_v2 data: Could not download'), err
    assert (tmp_path/'c').is_dir()   # the folder given by either flag is the one used

def test_download_progress_says_size_and_rate(tmp_path):
    src = tmp_path/'src.bin'; src.write_bytes(os.urandom(2 * 2**20 + 7))
    err = io.StringIO()
    with contextlib.redirect_stderr(err): download_url(src.as_uri(), tmp_path/'dst.bin', chunk=2**18)
    assert re.search(r'dst\.bin: 2\.0/2\.0 MiB at [\d.]+ MiB/s', err.getvalue()), err.getvalue()
    err = io.StringIO()
    with contextlib.redirect_stderr(err): download_url((tmp_path/'src.bin').as_uri(), tmp_path/'quiet.bin', progress=False)
    assert err.getvalue() == ''

def test_progress_helper():
    assert list(progress(range(4), show=False)) == [0, 1, 2, 3]
    assert list(progress(iter(range(4)), total=4)) == [0, 1, 2, 3]
    b = ByteProgress('x', None); assert b.text(2**20).startswith('x: 1.0 MiB at')

def test_license_file_matches_declared_licence():
    meta = tomllib.loads((ROOT/'pyproject.toml').read_text())['project']
    assert meta['license'] == 'Apache-2.0'
    assert 'Apache License' in (ROOT/'LICENSE').read_text() and 'Version 2.0' in (ROOT/'LICENSE').read_text()

def test_documentation_url_is_the_docs_site():
    urls = tomllib.loads((ROOT/'pyproject.toml').read_text())['project']['urls']
    assert urls['Documentation'].startswith('https://') and 'github.com' not in urls['Documentation']
    import stargan_v2.core as c
    assert urls['Documentation'].rstrip('/') + '/core.html' in c.__doc__

def _cells(nb): return [''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code']

@pytest.mark.parametrize('nb', sorted((ROOT/'nbs').glob('*.ipynb')), ids=lambda p: p.name)
def test_notebooks_run_without_dev_packages(nb):
    "What Colab lacks: nbdev (the export cell must tolerate it) and the dev-only cross-check packages (guarded)."
    for s in _cells(nb):
        if 'nbdev_export' in s: assert 'except ImportError' in s, f"{nb.name}: export cell fails without nbdev"
        body = [l for l in s.splitlines() if not l.lstrip().startswith('#')]
        for l in body:
            if re.match(r'\s*(from|import)\s+(nbdev|pytest|pytorch_fid|playwright|voila)\b', l):
                assert l.startswith((' ', '\t')) and 'except ImportError' in s, f"{nb.name}: unguarded dev import {l.strip()!r}"


# ---- your own data, end to end through the console script: train (tracked), resume, eval and sample without --data
def _own_folder(root:Path) -> Path:
    import shutil
    from stargan_v2.shapes import shapes_path
    for s in ('train', 'val'):
        for dom in ('circle', 'square'):
            (root/s/dom).mkdir(parents=True)
            for f in sorted((shapes_path()/s/dom).glob('*.png'))[:12]: shutil.copy(f, root/s/dom/f.name)
    return root

def test_own_data_train_track_eval_sample(tmp_path, monkeypatch):
    import importlib.util, pandas as pd
    from stargan_v2.cli import main
    data = _own_folder(tmp_path/'my photos')
    monkeypatch.chdir(tmp_path)
    logs = ['csv'] + (['tensorboard'] if importlib.util.find_spec('tensorboard') else [])
    rc, out, err = _run(main, ['train', '--preset', 'tiny', '--data', str(data), '--iters', '2', '--device', 'cpu',
                               '--set', 'save_every=2', 'sample_every=2', 'print_every=1', '--quiet', '--log', *logs])
    assert rc == 0, err
    run = tmp_path/'runs'/'my photos'                                   # named after the data
    cfg = json.loads((run/'config.json').read_text())
    assert cfg['data'] == str(data.resolve()) and cfg['num_domains'] == 2
    m = pd.read_csv(run/'metrics.csv')
    assert {'D/latent_real', 'G/ref_cyc', 'lambda_ds', 'lr/generator', 'samples/reference'} <= set(m.key)
    if 'tensorboard' in logs: assert list((run/'tb').glob('events.out.tfevents.*'))
    # resume without --data: the run's own folder, not the preset's Shapes
    rc, out, err = _run(main, ['train', '--preset', 'tiny', '--out', str(run), '--iters', '3', '--device', 'cpu',
                               '--set', 'save_every=3', 'ds_iter=2', '--resume', '--quiet'])
    assert rc == 0, err
    # eval without --data finds the folder in the config; --log adds the scores to the run
    rc, out, err = _run(main, ['eval', '--checkpoint', str(run), '--fid', 'none', '--no-lpips', '--n-per-domain', '2',
                               '--num-outs', '1', '--device', 'cpu', '--log', 'csv'])
    assert rc == 0, err
    assert any(k.startswith('eval/shapes/') for k in pd.read_csv(run/'metrics.csv').key), 'scores not logged'
    # sample without --src/--ref: the run's val/ folder
    rc, out, err = _run(main, ['sample', '--checkpoint', str(run), '--out', str(tmp_path/'s'), '--n-src', '1', '--n-ref', '1',
                               '--n-latent', '1', '--no-video', '--device', 'cpu'])
    assert rc == 0, err
    assert (tmp_path/'s'/'reference.jpg').exists()

def test_train_mismatched_domains_is_clear_and_leaves_nothing(tmp_path, monkeypatch):
    from stargan_v2.cli import main
    data = _own_folder(tmp_path/'d')
    monkeypatch.chdir(tmp_path)
    rc, _, err = _run(main, ['train', '--preset', 'tiny', '--data', str(data), '--set', 'num_domains=3', '--quiet'])
    assert rc == 1 and 'num_domains=3' in err and 'has 2 domain folders' in err and 'Traceback' not in err
    rc, _, err = _run(main, ['train', '--preset', 'tiny', '--data', str(tmp_path/'missing'), '--quiet'])
    assert rc == 1 and 'does not exist' in err
    assert not (tmp_path/'runs').exists() or not any((tmp_path/'runs').iterdir())

def test_log_backend_missing_package_is_clear(tmp_path, monkeypatch):
    import builtins
    from stargan_v2.tracking import make_trackers, TrackingUnavailable
    real = builtins.__import__
    def fake(name, *a, **k):
        if name.split('.')[0] == 'wandb': raise ImportError('no wandb')
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, '__import__', fake)
    with pytest.raises(TrackingUnavailable, match='pip install wandb'): make_trackers(['wandb'], tmp_path)

def test_wandb_tracker_offline(tmp_path, monkeypatch):
    pytest.importorskip('wandb')
    monkeypatch.delenv('WANDB_MODE', raising=False)
    from stargan_v2.tracking import make_trackers
    (t,) = make_trackers(['wandb'], tmp_path)
    t.log({'D/latent_real': 1.0, 'lambda_ds': 0.5}, 1); t.close()
    runs = list((tmp_path/'wandb').glob('offline-run-*'))                # offline by default: nothing left the machine
    assert len(runs) == 1 and list(runs[0].glob('*.wandb'))


# ---- stargan_v2 data align: the FAN with random weights for the plumbing (the geometry is checked in lesson 04b)
def test_data_align_command(tmp_path, monkeypatch):
    import numpy as np, torch
    from PIL import Image
    import stargan_v2.fan as fan_mod
    torch.manual_seed(0)
    monkeypatch.setattr(fan_mod, 'load_fan', lambda path=None, **k: fan_mod.FAN())   # no download: random weights
    for dom in ('female', 'male'):
        (tmp_path/'photos'/dom).mkdir(parents=True)
        Image.fromarray((np.random.rand(90, 70, 3) * 255).astype(np.uint8)).save(tmp_path/'photos'/dom/'a.jpg')
    lm = np.random.default_rng(0).uniform(60, 200, (98, 2)); np.savez(tmp_path/'lm.npz', mean=lm)
    rc, out, err = _run(cli_data, ['align', str(tmp_path/'photos'), str(tmp_path/'aligned'), '--img-size', '32',
                                   '--lm-mean', str(tmp_path/'lm.npz'), '--device', 'cpu'])
    assert rc == 0, err
    assert sorted(p.relative_to(tmp_path/'aligned').as_posix() for p in (tmp_path/'aligned').rglob('*.png')) == ['female/a.png', 'male/a.png']
    assert Image.open(tmp_path/'aligned'/'male'/'a.png').size == (32, 32)
    rc, out, err = _run(cli_data, ['align', str(tmp_path/'photos'), str(tmp_path/'x'), '--lm-mean', str(tmp_path/'none.npz')])
    assert rc == 1 and 'weights download wing' in err and 'Traceback' not in err
    rc, out, err = _run(cli_data, ['align', str(tmp_path/'empty'), str(tmp_path/'x'), '--lm-mean', str(tmp_path/'lm.npz')])
    assert rc == 1 and 'no png/jpg/jpeg images' in err
