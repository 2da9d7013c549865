"Core behaviour that later lessons rely on: configs survive checkpoints, the CLI dispatches."
import shutil, subprocess, sys
from dataclasses import asdict
import torch
import pytest
from stargan_v2.core import Config, config_diff, get_config, atomic_save, set_seed, rng_state, set_rng_state


def test_config_roundtrips_through_weights_only_checkpoint(tmp_path):
    cfg = Config.shapes(total_iters=123)
    p = atomic_save({'config': asdict(cfg)}, tmp_path / 'c.ckpt')
    back = Config.from_dict(torch.load(p, weights_only=True)['config'])
    assert back == cfg and config_diff(back, cfg) == {}


def test_presets_match_paper():
    a, c = get_config('afhq'), get_config('celeba_hq')
    assert (a.img_size, a.num_domains, a.w_hpf, a.lambda_ds, a.batch_size, a.total_iters) == (256, 3, 0., 2., 8, 100_000)
    assert (c.img_size, c.num_domains, c.w_hpf, c.lambda_ds) == (256, 2, 1., 1.)
    assert (a.lr, a.f_lr, a.beta1, a.beta2, a.weight_decay, a.ema_beta) == (1e-4, 1e-6, 0., 0.99, 1e-4, 0.999)
    with pytest.raises(ValueError, match='Unknown preset'): get_config('afhqq')


def test_rng_state_roundtrip(tmp_path):
    set_seed(3); st = rng_state(); a = torch.randn(3)
    atomic_save(st, tmp_path / 'r.pt'); set_seed(4)
    set_rng_state(torch.load(tmp_path / 'r.pt', weights_only=True))
    assert torch.equal(torch.randn(3), a)


def test_console_script_help():
    "The installed `stargan_v2` script lists the subcommands and rejects unknown ones."
    exe = shutil.which('stargan_v2')
    assert exe, "the stargan_v2 console script is not installed: run pip install -e ."
    out = subprocess.run([exe, '--help'], capture_output=True, text=True)
    assert out.returncode == 0 and all(c in out.stdout for c in ('data', 'train', 'eval', 'sample'))
    bad = subprocess.run([exe, 'nope'], capture_output=True, text=True)
    assert bad.returncode == 2 and 'unknown command' in bad.stderr
