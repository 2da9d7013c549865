"The committed trained models: files match their manifests, they load as translators, and their check scores reproduce."
import json
import pytest, torch
from stargan_v2.trained import trained_names, trained_manifest, verify_trained, load_trained, TrainedModelError, _check_settings
from stargan_v2.evaluate import shapes_scores

TOL = {'acc': .05, 'measured': .05, 'pattern': .1, 'hue_in': .1, 'hue_corr': .1, 'pos': .3, 'size': .3, 'rot': 1.5, 'hue': 3.,
       'diversity_l1': .01, 'diversity': 5., 'shapes_fid': .5}

def _tol(k):
    "Absolute tolerance of a score: different CPUs/PyTorch builds round convolutions differently (the same build reproduces exactly)."
    return next(v for p, v in sorted(TOL.items(), key=lambda kv: -len(kv[0])) if k.startswith(p))

def test_shapes_model_is_committed():
    assert 'shapes' in trained_names()
    m = trained_manifest('shapes')
    assert m['dtype'] == 'float16' and m['method'] == 'stargan_v2' and m['command'].startswith('stargan_v2 train')
    assert sum(f['bytes'] for f in m['files'].values()) < 2_000_000            # small enough to ship with the package
    assert m['scores']['acc_latent'] > .9 and m['scores']['acc_reference'] > .85   # a model that really translates

@pytest.mark.parametrize('name', trained_names())
def test_committed_model_reproduces_its_manifest(name):
    m = verify_trained(name)
    cfg, tr = load_trained(name)
    assert all(p.dtype == torch.float32 for m in tr.modules() for p in m.parameters()) and not any(m.training for m in tr.modules())
    got = shapes_scores(tr, cfg, **m['check']['settings'])
    for k, want in m['check']['scores'].items():
        assert got[k] == pytest.approx(want, abs=_tol(k)), (k, got[k], want)

def test_tampered_model_is_refused(tmp_path):
    import shutil
    name = trained_names()[0]
    from stargan_v2.trained import trained_dir
    d = tmp_path/name; shutil.copytree(trained_dir(name), d)
    (d/'config.json').write_text((d/'config.json').read_text().replace('"seed"', '"seed" ', 1))
    with pytest.raises(TrainedModelError, match='does not match its manifest'): verify_trained(name, d)
    shutil.copy(trained_dir(name)/'config.json', d/'config.json'); verify_trained(name, d)   # restored: accepted
    (d/'nets_ema.ckpt').unlink()
    with pytest.raises(TrainedModelError, match='is missing'): verify_trained(name, d)
