"Training reliability: exact resume, NaN guard, config refusal, Ctrl-C, official checkpoint files, the CLI and the star-import surface."
import os, signal
import pytest, torch
from fastai.callback.core import Callback
from stargan_v2.core import Config
from stargan_v2.models import build_nets
from stargan_v2.checkpoints import safe_load
from stargan_v2.callbacks import latest_state, ConfigMismatch
from stargan_v2.learner import train, cli_train, TrainingStopped
from helpers import ckpt_files, assert_equal, Poison

CFG = Config.tiny(total_iters=4, ds_iter=4, save_every=2, sample_every=2, print_every=2)

def _run(out, cfg=CFG, **kw): return train(cfg, out, device='cpu', verbose=False, progress=False, **kw)

def _files(out, it): return ckpt_files(out, it, ('nets', 'nets_ema', 'optims'))


@pytest.mark.reliability
def test_resume_is_exact(tmp_path):
    _run(tmp_path/'straight')
    _run(tmp_path/'resumed', CFG.replace(total_iters=2))
    learn = _run(tmp_path/'resumed', resume=True)
    assert learn.train_iter == 4
    assert_equal(_files(tmp_path/'straight', 4), _files(tmp_path/'resumed', 4))


@pytest.mark.reliability
def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path):
    with pytest.raises(TrainingStopped, match=r'Non-finite loss at iteration 4: D/latent_real=nan.*last good checkpoint is iteration 2'):
        _run(tmp_path, cbs=[Poison(3)])
    assert latest_state(tmp_path).name == '000002_state.ckpt'
    assert not (tmp_path/'checkpoints'/'000003_nets.ckpt').exists()
    assert all(torch.isfinite(v).all() for sd in _files(tmp_path, 2)['nets'].values() for v in sd.values() if v.is_floating_point())
    assert 'Non-finite loss' in (tmp_path/'log.txt').read_text()

@pytest.mark.reliability
def test_checkpoint_from_other_config_is_refused(tmp_path):
    _run(tmp_path, CFG.replace(total_iters=2))
    with pytest.raises(ConfigMismatch, match=r"lambda_cyc: checkpoint 1.0, now 2.0"):
        _run(tmp_path, CFG.replace(lambda_cyc=2.), resume=True)
    with pytest.raises(FileExistsError, match='resume'): _run(tmp_path)   # no silent overwrite either

class _CtrlC(Callback):
    "Send SIGINT to ourselves during iteration `at` (as a user pressing Ctrl-C would)."
    order = -7
    def __init__(self, at): self.at = at
    def before_batch(self):
        if self.learn.train_iter == self.at - 1: os.kill(os.getpid(), signal.SIGINT)

@pytest.mark.reliability
def test_ctrl_c_saves_and_resume_continues(tmp_path):
    learn = _run(tmp_path, CFG.replace(total_iters=6, save_every=4), cbs=[_CtrlC(3)])
    assert learn.train_iter == 3 and latest_state(tmp_path).name == '000003_state.ckpt'
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # handler restored
    learn = _run(tmp_path, CFG.replace(total_iters=6, save_every=4), resume=True)
    assert learn.train_iter == 6

def test_official_checkpoint_format(tmp_path):
    _run(tmp_path, CFG.replace(total_iters=2))
    f = _files(tmp_path, 2)
    assert set(f['nets']) == {'generator', 'mapping_network', 'style_encoder', 'discriminator'}
    assert set(f['nets_ema']) == {'generator', 'mapping_network', 'style_encoder'}
    assert set(f['optims']) == set(f['nets']) and all('state' in o and 'param_groups' in o for o in f['optims'].values())
    nets = build_nets(CFG)
    for n, sd in f['nets'].items(): getattr(nets, n).load_state_dict(sd, strict=True)   # plain strict loading, as the official code does
    assert sorted(p.name for p in (tmp_path/'samples').iterdir()) == ['000002_latent.png', '000002_reference.png']
    assert (tmp_path/'losses.png').exists() and (tmp_path/'config.json').exists()

def test_cli_train_tiny(tmp_path, capsys):
    out = tmp_path/'cli'
    rc = cli_train(['--preset', 'tiny', '--out', str(out), '--iters', '2', '--device', 'cpu', '--threads', '1',
                    '--set', 'save_every=2', 'sample_every=2', 'print_every=1'])
    assert rc == 0 and (out/'checkpoints'/'000002_nets_ema.ckpt').exists()
    assert 'G/latent_adv' in (out/'log.txt').read_text() and 'done: iteration 2' in capsys.readouterr().out

    with pytest.raises(SystemExit, match='no field'): cli_train(['--preset', 'tiny', '--out', str(out), '--set', 'nonsense=1'])

LEARNER_SURFACE = {
    'Config', 'get_config', 'set_seed', 'show_grid', 'get_dls', 'fixed_batch', 'build_nets', 'ema_copy', 'Nets',
    'd_loss', 'g_loss', 'ds_weight', 'GANTrainer', 'StarGANTrainer', 'make_optimizers', 'd_step', 'g_step',
    'EMACallback', 'DSDecayCallback', 'LossLogCallback', 'SampleGridCallback', 'CheckpointCallback', 'NanGuardCallback',
    'save_checkpoint', 'load_checkpoint', 'plot_losses', 'ConfigMismatch',
    'Translator', 'StarGANv2Translator', 'translator_grids', 'load_translator',
    'gan_learner', 'stargan_learner', 'train', 'cli_train', 'config_from_args', 'TrainingStopped', 'run_folder', 'resume_run'}

def test_learner_star_import_surface():
    ns = {}
    exec('from stargan_v2.learner import *', ns)
    assert set(ns) - {'__builtins__'} == LEARNER_SURFACE


@pytest.mark.reliability
def test_g_step_stopped_mid_step_leaves_no_network_frozen():
    "The NaN guard raises from g_step's on_loss hook, inside `frozen`: every requires_grad flag must come back."
    from stargan_v2.trainer import g_step, make_optimizers
    cfg = Config.tiny(); nets = build_nets(cfg); optims = make_optimizers(nets, cfg)
    B, S = 2, cfg.img_size
    x, xr, xr2 = torch.randn(3, B, 3, S, S).unbind(0)
    y, yt = torch.tensor([0, 1]), torch.tensor([2, 0])
    before = {n: p.detach().clone() for n, p in nets.generator.named_parameters()}
    def stop(loss, parts): raise TrainingStopped('stop')
    for mode in (dict(z_trgs=tuple(torch.randn(2, B, cfg.latent_dim))), dict(x_refs=(xr, xr2))):
        with pytest.raises(TrainingStopped): g_step(nets, optims, cfg, x, y, yt, on_loss=stop, **mode)
        assert all(p.requires_grad for p in nets.parameters())
    assert all(torch.equal(p, before[n]) for n, p in nets.generator.named_parameters())   # nothing was stepped


class _ChangeCfg(Callback):
    "Change the learner's one config after iteration 2 (as a notebook user might: `learn.cfg = learn.cfg.replace(...)`)."
    def after_batch(self):
        if self.learn.train_iter == 2: self.learn.cfg = self.learn.cfg.replace(lambda_cyc=3.)

@pytest.mark.reliability
def test_config_changed_mid_run_is_what_is_trained_and_saved(tmp_path, monkeypatch):
    "One config path: the trainer reads learn.cfg, and the saved config (state and config.json) is the one trained with."
    import stargan_v2.trainer as T
    seen, g_step = [], T.g_step
    def spy(nets, optims, cfg, *a, **kw): seen.append(cfg.lambda_cyc); return g_step(nets, optims, cfg, *a, **kw)
    monkeypatch.setattr(T, 'g_step', spy)
    _run(tmp_path/'r', cbs=[_ChangeCfg()])
    assert seen == [1., 1., 1., 1., 3., 3., 3., 3.]   # two G steps per iteration, what the G loss was computed with
    import json
    assert json.loads((tmp_path/'r'/'config.json').read_text())['lambda_cyc'] == 3.
    assert safe_load(tmp_path/'r'/'checkpoints'/'000004_state.ckpt')['config']['lambda_cyc'] == 3.


def test_lazy_r1_takes_the_penalty_every_kth_iteration_and_resumes_exactly(tmp_path, monkeypatch):
    import stargan_v2.losses as L
    calls, r1 = [], L.r1_reg
    monkeypatch.setattr(L, 'r1_reg', lambda *a: calls.append(1) or r1(*a))
    cfg = CFG.replace(r1_every=2)
    learn = _run(tmp_path/'straight', cfg)
    assert len(calls) == 4   # iterations 0 and 2, two D steps each (the official schedule: 8)
    hist = learn.loss_log.hist if hasattr(learn, 'loss_log') else next(c for c in learn.cbs if hasattr(c, 'hist')).hist
    reg = hist['D/latent_reg']
    assert len(reg) == 4 and reg[1] == reg[0] and reg[3] == reg[2] and reg[0] != reg[2]   # a skipped step logs the last R1
    _run(tmp_path/'resumed', cfg.replace(total_iters=2))
    _run(tmp_path/'resumed', cfg, resume=True)
    assert_equal(_files(tmp_path/'straight', 4), _files(tmp_path/'resumed', 4))
