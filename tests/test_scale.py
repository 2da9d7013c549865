"Scale (lesson 07b): bf16/fp16 autocast with R1 in fp32, gradient scaling with four optimisers and the NaN guard, the compiled view, data-parallel training on torch.distributed (gloo, 2 CPU processes) and --init-from."
import math, os, shutil, subprocess, sys, warnings
from pathlib import Path
from types import SimpleNamespace
import pytest, torch
from stargan_v2.core import Config, set_seed
from stargan_v2.data import get_dls
from stargan_v2.models import build_nets, ema_copy
from stargan_v2.losses import d_loss
from stargan_v2.checkpoints import save_nets, safe_load, CheckpointMismatch
from stargan_v2.learner import stargan_learner, train, cli_train
from stargan_v2.scale import ScaleCallback, ScaleError, resolve_precision, scale_learner, init_from

REPO = Path(__file__).resolve().parents[1]
CFG = Config.tiny(batch_size=4)

def _fit(precision, n=3, **kw):
    set_seed(0); cfg = CFG.replace(precision=precision)
    learn = scale_learner(stargan_learner(get_dls(cfg, device='cpu'), cfg), cfg, **kw)
    with learn.no_bar(), learn.no_logging(): learn.fit_iters(n)
    return learn

def test_precision_default_per_device():
    assert resolve_precision('auto', 'cpu') == 'fp32'
    assert resolve_precision('fp16', 'cpu') == 'fp16'
    with pytest.raises(ScaleError, match='precision must be one of'): resolve_precision('half', 'cpu')
    with pytest.raises(ScaleError, match='CUDA and CPU'): resolve_precision('bf16', 'mps')

# The tolerance of the bf16 run: every loss term of every iteration within 0.05 + 5% of the fp32 value (bf16 keeps 8
# significant bits, ~0.4% per op; measured on this tiny config the largest gap over 3 iterations is below 0.03).
BF16_ATOL, BF16_RTOL = 0.05, 0.05

@pytest.mark.reliability
def test_bf16_tiny_run_is_finite_and_close_to_fp32():
    h32, h16 = _fit('fp32').loss_log.hist, _fit('bf16').loss_log.hist
    terms = [k for k in h32 if k.startswith(('D/', 'G/'))]
    assert len(terms) >= 14 and len(h16['iter']) == 3
    for k in terms:
        for a, b in zip(h32[k], h16[k]):
            assert math.isfinite(b), k
            assert abs(a - b) <= BF16_ATOL + BF16_RTOL * abs(a), f"{k}: fp32 {a:.4f} vs bf16 {b:.4f}"

@pytest.mark.reliability
def test_r1_pass_runs_in_fp32_under_autocast():
    "d_loss under bf16 autocast: D's real-image pass (the one R1 differentiates) sees fp32 activations, the fake pass bf16."
    set_seed(0); nets = build_nets(CFG); seen = []
    h = nets.discriminator.main[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    x, y = torch.randn(2, 3, 16, 16), torch.tensor([0, 1])
    with torch.autocast('cpu', dtype=torch.bfloat16): loss, parts = d_loss(nets, CFG, x, y, y, z_trg=torch.randn(2, CFG.latent_dim))
    h.remove()
    assert seen == [torch.float32, torch.bfloat16] and loss.dtype == torch.float32 and math.isfinite(parts['reg'])

def test_r1_uses_the_eager_discriminator_of_a_compiled_view():
    set_seed(0); nets = build_nets(CFG); calls = []
    def spy(name, m): return lambda *a, **k: (calls.append(name), m(*a, **k))[1]
    view = SimpleNamespace(generator=nets.generator, mapping_network=nets.mapping_network, style_encoder=nets.style_encoder,
                           discriminator=spy('compiled', nets.discriminator), eager_discriminator=spy('eager', nets.discriminator), fan=None)
    view.style = lambda y, z=None, x_ref=None: nets.mapping_network(z, y) if z is not None else nets.style_encoder(x_ref, y)
    d_loss(view, CFG, torch.randn(2, 3, 16, 16), torch.tensor([0, 1]), torch.tensor([1, 2]), z_trg=torch.randn(2, CFG.latent_dim))
    assert calls == ['eager', 'compiled']

@pytest.mark.reliability
def test_fp16_skipped_step_is_not_a_nan():
    "An absurd first loss scale overflows the fp16 gradients: steps are skipped (weights untouched), the scale drops, training goes on."
    set_seed(0); cfg = CFG.replace(precision='fp16')
    learn = scale_learner(stargan_learner(get_dls(cfg, device='cpu'), cfg), cfg, init_scale=2.**40)
    d0 = {k: v.clone() for k, v in learn.model.discriminator.state_dict().items()}
    with learn.no_bar(), learn.no_logging(): learn.fit_iters(1)
    assert learn.nan_guard.message is None and learn.train_iter == 1
    assert learn.scale.skipped == 4 and learn.loss_parts['amp/skipped'] == 4.   # all four steps of iteration 1 skipped
    assert all(torch.equal(v, learn.model.discriminator.state_dict()[k]) for k, v in d0.items())
    assert learn.scale.scalers['D'].get_scale() == 2.**38 and learn.scale.scalers['G'].get_scale() == 2.**38
    with learn.no_bar(), learn.no_logging(): learn.fit_iters(14)   # the scale halves on every skip until steps go through
    assert learn.nan_guard.message is None and learn.train_iter == 15 and learn.scale.skipped < 4 * 15
    assert not all(torch.equal(v, learn.model.discriminator.state_dict()[k]) for k, v in d0.items())
    assert all(math.isfinite(v) for v in learn.loss_parts.values())
    sd = learn.scale.state_dict()
    cb = ScaleCallback('fp16'); cb.load_state_dict(sd)
    cb.device_type = 'cpu'; assert cb.scaler('D').get_scale() == learn.scale.scalers['D'].get_scale()

@pytest.mark.reliability
def test_fp16_nonfinite_loss_still_stops_training():
    "The NaN guard still stops a run whose loss *value* is NaN under fp16 (a NaN is not a skip)."
    from fastai.callback.core import Callback
    class Poison(Callback):
        order = -9
        def before_batch(self):
            if self.learn.train_iter == 1:
                with torch.no_grad(): next(self.learn.model.discriminator.parameters()).fill_(float('nan'))
    set_seed(0); cfg = CFG.replace(precision='fp16')
    learn = scale_learner(stargan_learner(get_dls(cfg, device='cpu'), cfg, cbs=[Poison()]), cfg)
    with learn.no_bar(), learn.no_logging(): learn.fit_iters(3)
    assert learn.nan_guard.message is not None and 'Non-finite loss at iteration 2' in learn.nan_guard.message

def _save_random_run(d:Path, cfg:Config, seed:int=1):
    set_seed(seed); nets = build_nets(cfg)
    (d/'checkpoints').mkdir(parents=True)
    save_nets(nets, d/'checkpoints'/'000007_nets.ckpt'); save_nets(ema_copy(nets), d/'checkpoints'/'000007_nets_ema.ckpt')
    return nets

def _same(a:dict, b:dict): return set(a) == set(b) and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)

def test_init_from_checkpoint_of_random_nets(tmp_path, capsys):
    cfg = CFG.replace(total_iters=1, save_every=1, sample_every=1)
    src = _save_random_run(tmp_path/'src', cfg)
    learn = train(cfg, tmp_path/'ft', device='cpu', verbose=False, progress=False, init_from=tmp_path/'src', cbs=[_StopBefore()])
    for n in ('generator', 'mapping_network', 'style_encoder', 'discriminator'):
        assert _same(getattr(learn.model, n).state_dict(), getattr(src, n).state_dict()), n
    assert _same(learn.ema.nets_ema.style_encoder.state_dict(), src.style_encoder.state_dict())
    assert 'initialised from' in (tmp_path/'ft'/'log.txt').read_text()
    # published-style file (EMA nets only): G, F, E load, D stays as built, and it says so
    only_ema = tmp_path/'pub'/'100000_nets_ema.ckpt'; only_ema.parent.mkdir(); save_nets(ema_copy(src), only_ema)
    set_seed(5); learn = stargan_learner(get_dls(cfg, device='cpu'), cfg); d_before = {k: v.clone() for k, v in learn.model.discriminator.state_dict().items()}
    msg = init_from(learn, only_ema)
    assert 'D from scratch' in msg and _same(learn.model.discriminator.state_dict(), d_before)
    assert _same(learn.model.generator.state_dict(), src.generator.state_dict())
    # the strict loader refuses a file of another configuration, in one line through the CLI
    rc = cli_train(['--preset', 'tiny', '--iters', '1', '--device', 'cpu', '--out', str(tmp_path/'bad'), '--quiet',
                    '--set', 'style_dim=4', '--init-from', str(tmp_path/'src')])
    assert rc == 1 and 'does not fit the networks you built' in capsys.readouterr().err
    rc = cli_train(['--preset', 'tiny', '--iters', '1', '--device', 'cpu', '--out', str(tmp_path/'bad2'), '--quiet', '--init-from', str(tmp_path/'nope')])
    assert rc == 1 and 'no such file or folder' in capsys.readouterr().err

from fastai.callback.core import Callback, CancelFitException
class _StopBefore(Callback):
    "Stop before the first iteration: we only look at the initialised weights."
    order = -20
    def before_batch(self): raise CancelFitException()

# ---------------------------------------------------------------- torch.distributed (gloo, CPU processes via torchrun)
TORCHRUN_TIMEOUT = 300   # seconds per launch: a hung collective fails the test instead of the CI job

def _torchrun(nproc:int, out:Path, *args):
    env = {**os.environ, 'PYTHONPATH': str(REPO) + os.pathsep + os.environ.get('PYTHONPATH', ''), 'OMP_NUM_THREADS': '1'}
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', str(nproc),
           '-m', 'stargan_v2.cli', 'train', '--preset', 'tiny', '--device', 'cpu', '--threads', '1', '--quiet',
           '--out', str(out), '--batch-size', '4', '--set', 'save_every=2', 'sample_every=2', 'print_every=1', *args]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TORCHRUN_TIMEOUT, cwd=REPO)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r

def _one_process(out:Path, monkeypatch, *args):
    "The 1-process reference, in this pytest process: the same CLI and code path as under torchrun, world size 1."
    import socket
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    for k, v in dict(RANK='0', WORLD_SIZE='1', LOCAL_RANK='0', MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port)).items(): monkeypatch.setenv(k, v)
    rc = cli_train(['--preset', 'tiny', '--device', 'cpu', '--quiet', '--out', str(out), '--batch-size', '4',
                    '--set', 'save_every=2', 'sample_every=2', 'print_every=1', *args])
    assert rc == 0 and not torch.distributed.is_initialized()

def _ckpt(out:Path, it:int, kind:str): return safe_load(out/'checkpoints'/f'{it:06d}_{kind}.ckpt')

@pytest.mark.reliability
def test_two_processes_match_one_process_and_resume_exactly(tmp_path, monkeypatch):
    """torchrun, gloo: 2 processes with batch 2 each end within float tolerance of 1 process with batch 4 after 4
    iterations; and a 2-process run stopped at iteration 2 and resumed ends bit-identical to the straight run."""
    _one_process(tmp_path/'one', monkeypatch, '--iters', '4')
    r2 = _torchrun(2, tmp_path/'two', '--iters', '4')
    assert '2 per process x 2' in r2.stdout
    # 1) every logged loss term of every iteration (averaged over ranks) agrees
    h1, h2 = (_ckpt(tmp_path/d, 4, 'state')['callbacks']['loss_log'] for d in ('one', 'two'))
    for k in h1: torch.testing.assert_close(h2[k], h1[k], rtol=0, atol=1e-5, msg=k)
    # 2) F, E, D and EMA weights agree to float rounding
    n1, n2 = _ckpt(tmp_path/'one', 4, 'nets'), _ckpt(tmp_path/'two', 4, 'nets')
    e1, e2 = _ckpt(tmp_path/'one', 4, 'nets_ema'), _ckpt(tmp_path/'two', 4, 'nets_ema')
    for n in ('mapping_network', 'style_encoder', 'discriminator'):
        for k in n1[n]: torch.testing.assert_close(n2[n][k], n1[n][k], rtol=0, atol=1e-6, msg=f'{n}.{k}')
    # 3) G computes the same function. (Conv biases that feed an instance norm have a gradient of exactly 0 in exact
    # arithmetic; Adam turns their float-rounding noise into ±lr steps that differ between runs but cancel in the norm.)
    cfg = Config.tiny(batch_size=4)
    outs = []
    for sd in (n1, n2, e1, e2):
        G = build_nets(cfg).generator; G.load_state_dict(sd['generator']); G.eval()
        g = torch.Generator().manual_seed(0)
        with torch.no_grad(): outs.append(G(torch.rand(4, 3, 16, 16, generator=g) * 2 - 1, torch.randn(4, cfg.style_dim, generator=g)))
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=1e-5); torch.testing.assert_close(outs[3], outs[2], rtol=0, atol=1e-5)
    # 4) exact resume at the same world size: copy the 2-process run as it was at iteration 2, resume to 4
    res = tmp_path/'resumed'; shutil.copytree(tmp_path/'two', res)
    for f in (res/'checkpoints').glob('000004_*'): f.unlink()
    _torchrun(2, res, '--iters', '4', '--resume')
    for kind in ('nets', 'nets_ema', 'optims'):
        a, b = _ckpt(tmp_path/'two', 4, kind), _ckpt(res, 4, kind)
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=kind)

def test_batch_must_split_across_processes():
    from stargan_v2.scale import ShardedLoader
    dls = get_dls(CFG, device='cpu')
    with pytest.raises(ScaleError, match='divisible by the 3 processes'): ShardedLoader.from_loader(dls.train, 0, 3, 0)
