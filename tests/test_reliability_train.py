"""Issue #12, training and command-line half: NaN weights never saved, `_stateful`, resume fallback, the output-folder
lock, orphan temp files, one error path for every command (exit codes 1 / 2 / 130, --debug), --iters and --resume misuse.
Slow cases (concurrent runs, kill -9 during a save, Ctrl-C) run the real CLI in subprocesses, each bounded by a timeout."""
import json, os, signal, subprocess, sys, time
from dataclasses import asdict
from pathlib import Path
import pytest
import torch

from stargan_v2.core import Config, run_lock, FolderLockedError
from stargan_v2.checkpoints import safe_load, nonfinite_entries, NonFiniteCheckpointError
from stargan_v2.callbacks import save_checkpoint, load_checkpoint, latest_state
from stargan_v2.learner import train, TrainingStopped
from stargan_v2.cli import main

pytestmark = pytest.mark.reliability
REPO = Path(__file__).resolve().parents[1]
CFG = Config.tiny(total_iters=4, save_every=2, sample_every=100, print_every=1)


def _train(out, cfg=CFG, **kw):
    return train(cfg, out, device='cpu', verbose=False, progress=False, **kw)


def _cli(*args, capsys=None):
    rc = main(list(map(str, args)))
    out = capsys.readouterr() if capsys is not None else None
    return rc, out


def _ckpt_steps(out, kind='state'):
    return sorted(int(f.name[:6]) for f in (Path(out)/'checkpoints').glob(f'*_{kind}.ckpt'))


# ---------------------------------------------------------------------------------------------------- finite weights
def _poison_cb(at):
    from fastai.callback.core import Callback
    class Poison(Callback):
        order = -1
        def after_batch(self):
            if self.learn.train_iter == at:
                with torch.no_grad(): next(self.learn.model.generator.parameters()).view(-1)[0] = float('nan')
    return Poison()


def test_nan_weights_after_a_finite_step_are_never_saved_or_named_good(tmp_path):
    out = tmp_path/'run'
    with pytest.raises(TrainingStopped) as e: _train(out, CFG.replace(total_iters=6, save_every=1), cbs=[_poison_cb(3)])
    msg = str(e.value)
    assert 'Non-finite weights after iteration 3' in msg and 'last good checkpoint is iteration 2' in msg
    assert _ckpt_steps(out) == [1, 2] and _ckpt_steps(out, 'nets') == [1, 2]           # nothing written for 3, nor at the end
    for f in (out/'checkpoints').glob('*.ckpt'): assert not nonfinite_entries(safe_load(f)), f


def test_save_checkpoint_refuses_non_finite_weights(tmp_path):
    learn = _train(tmp_path/'run', CFG.replace(total_iters=2))
    with torch.no_grad(): next(learn.nets_ema.style_encoder.parameters()).view(-1)[0] = float('inf')
    learn.train_iter = 3
    with pytest.raises(NonFiniteCheckpointError, match='ema.style_encoder'): save_checkpoint(learn, tmp_path/'run'/'checkpoints')
    assert _ckpt_steps(tmp_path/'run') == [2]


def test_diverging_lr_never_leaves_a_nan_checkpoint(tmp_path):
    "The issue's reproduction: --preset tiny --set lr=30 f_lr=30 save_every=1. Whatever stops it, every file on disk is finite."
    out = tmp_path/'run'
    try: _train(out, CFG.replace(lr=30., f_lr=30., save_every=1, total_iters=10))
    except TrainingStopped as e:
        msg = str(e)
        if 'last good checkpoint is iteration' in msg:
            k = int(msg.split('last good checkpoint is iteration ')[1].split('.')[0])
            assert k in _ckpt_steps(out)
    for f in (out/'checkpoints').glob('*.ckpt'): assert not nonfinite_entries(safe_load(f)), f


# ---------------------------------------------------------------------------------------------------- _stateful
def test_state_file_holds_no_copies_of_the_weights(tmp_path):
    from stargan_v2.callbacks import _stateful
    learn = _train(tmp_path/'run', CFG.replace(total_iters=2))
    st = safe_load(tmp_path/'run'/'checkpoints'/'000002_state.ckpt')
    assert st['callbacks'] and set(st['callbacks']) == set(_stateful(learn))
    for n in st['callbacks']:   # only callbacks whose own (project) class defines state_dict, not fastai's attribute delegation
        assert any('state_dict' in vars(k) for k in type(getattr(learn, n)).__mro__ if k.__module__.startswith('stargan_v2')), n
    flat = json.dumps({k: list(v) for k, v in st['callbacks'].items()})
    assert 'generator' not in flat and 'from_rgb.weight' not in flat                       # no network weights in there
    size = lambda k: (tmp_path/'run'/'checkpoints'/f'000002_{k}.ckpt').stat().st_size
    assert size('state') < size('nets') / 4


# ---------------------------------------------------------------------------------------------------- resume
def test_resume_falls_back_to_the_last_complete_finite_checkpoint(tmp_path):
    out = tmp_path/'run'; _train(out)
    ck = out/'checkpoints'
    b = (ck/'000004_nets.ckpt').read_bytes(); (ck/'000004_nets.ckpt').write_bytes(b[:len(b) // 3])   # truncated newest
    (ck/f'.000004_optims.ckpt.tmp999999').write_bytes(b'half')                                          # an orphan of a dead save
    learn = _train(out, CFG.replace(total_iters=6), resume=True)
    assert learn.train_iter == 6 and learn.resume_skipped and '000004' in learn.resume_skipped[0]
    log = (out/'log.txt').read_text()
    assert 'skipped the newer checkpoint(s) 000004' in log and 'truncated' in log and 'resuming from iteration 2' in log
    assert not list(ck.glob('.*.tmp*'))


def test_resume_skips_nan_checkpoint(tmp_path):
    out = tmp_path/'run'; _train(out)
    f = out/'checkpoints'/'000004_nets_ema.ckpt'; d = safe_load(f)
    next(iter(d['generator'].values())).view(-1)[0] = float('nan'); torch.save(d, f)
    learn = _train(out, CFG.replace(total_iters=5), resume=True)
    assert learn.train_iter == 5 and 'non-finite' in learn.resume_skipped[0]


# ---------------------------------------------------------------------------------------------------- lock
def test_output_folder_lock_refuses_a_second_run_and_a_dead_lock_does_not_block(tmp_path):
    out = tmp_path/'run'; out.mkdir()
    holder = subprocess.Popen([sys.executable, '-c', 'import sys, time; from stargan_v2.core import run_lock\n'
                               f'with run_lock({str(out)!r}): print("held", flush=True); time.sleep(120)'],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, 'PYTHONPATH': str(REPO)})
    try:
        assert holder.stdout.readline().strip() == 'held'
        with pytest.raises(FolderLockedError, match=f'PID {holder.pid}'): _train(out)
        assert not (out/'checkpoints').exists() and not (out/'config.json').exists()             # nothing written
    finally:
        holder.kill(); holder.wait()                                                             # kill -9: a stale lock file remains
    assert (out/'.lock').exists()
    assert _train(out).train_iter == 4                                                          # ... and does not block


def test_two_concurrent_train_commands_into_one_folder(tmp_path):
    "Bounded (about a minute on a shared CPU): exactly one run trains; the other stops with a one-line message, exit 1."
    out = tmp_path/'run'
    cmd = [sys.executable, '-c', 'import sys; from stargan_v2.cli import main; sys.exit(main(sys.argv[1:]))', 'train', '--preset', 'tiny',
           '--out', str(out), '--iters', '6', '--device', 'cpu', '--threads', '1', '--quiet', '--set', 'save_every=2', 'sample_every=100']
    env = {**os.environ, 'PYTHONPATH': str(REPO), 'OMP_NUM_THREADS': '1'}
    ps = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    res = [p.communicate(timeout=200) + (p.returncode,) for p in ps]
    rcs = sorted(r[2] for r in res)
    assert rcs == [0, 1], res
    loser = [r for r in res if r[2] == 1][0]
    assert ('in use by another training run' in loser[1] or 'already holds checkpoints' in loser[1]) and 'Traceback' not in loser[1]
    assert _ckpt_steps(out) == [2, 4, 6]


# ---------------------------------------------------------------------------------------------------- kill -9 / Ctrl-C
_SLOW_SAVE = ("import sys, time, torch\n_save = torch.save\n"
              "def slow(obj, f, *a, **k): _save(obj, f, *a, **k); time.sleep(0.3)\n"
              "torch.save = slow\nfrom stargan_v2.cli import main\nsys.exit(main(sys.argv[1:]))")


def test_kill_during_save_then_resume(tmp_path):
    "kill -9 while a checkpoint is being written (bounded: ~1 min): the resume cleans the orphan and continues from a complete one."
    out = tmp_path/'run'
    env = {**os.environ, 'PYTHONPATH': str(REPO), 'OMP_NUM_THREADS': '1'}
    args = ['train', '--preset', 'tiny', '--out', str(out), '--device', 'cpu', '--threads', '1', '--quiet', '--set', 'save_every=1', 'sample_every=1000']
    p = subprocess.Popen([sys.executable, '-c', _SLOW_SAVE, *args, '--iters', '1000'], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    try:
        while time.time() - t0 < 150 and not list((out/'checkpoints').glob('.*.tmp*')) or len(_ckpt_steps(out)) < 2:
            if p.poll() is not None: break
            time.sleep(0.02)
        os.kill(p.pid, signal.SIGKILL)
    finally: p.wait()
    assert _ckpt_steps(out), 'no checkpoint was written before the kill'
    done = max(_ckpt_steps(out))
    r = subprocess.run([sys.executable, '-c', 'import sys; from stargan_v2.cli import main; sys.exit(main(sys.argv[1:]))', *args,
                        '--resume', '--iters', str(done + 2)], env=env, capture_output=True, text=True, timeout=200)
    assert r.returncode == 0, r.stderr
    assert not list((out/'checkpoints').glob('.*.tmp*'))                                    # orphans removed
    assert max(_ckpt_steps(out)) == done + 2


def test_ctrl_c_saves_and_exits_130(tmp_path):
    out = tmp_path/'run'
    env = {**os.environ, 'PYTHONPATH': str(REPO), 'OMP_NUM_THREADS': '1'}
    p = subprocess.Popen([sys.executable, '-c', 'import sys; from stargan_v2.cli import main; sys.exit(main(sys.argv[1:]))', 'train',
                          '--preset', 'tiny', '--out', str(out), '--iters', '100000', '--device', 'cpu', '--threads', '1',
                          '--set', 'save_every=3', 'sample_every=100000', 'print_every=1'],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in p.stdout:
        if line.startswith('iter 4/'): break
    p.send_signal(signal.SIGINT)
    so, se = p.communicate(timeout=120)
    assert p.returncode == 130, se
    assert 'interrupted at iteration' in se and 'Traceback' not in se
    st = latest_state(out); assert st is not None and int(st.name[:6]) >= 4


# ---------------------------------------------------------------------------------------------------- the CLI's one error path
@pytest.fixture(scope='module')
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp('cli')/'run'
    assert main(['train', '--preset', 'tiny', '--out', str(out), '--iters', '2', '--device', 'cpu', '--quiet',
                 '--set', 'save_every=2', 'sample_every=100']) == 0
    return out


def _one_line_error(capsys, rc, code=1, says=''):
    cap = capsys.readouterr(); err = cap.err
    assert rc == code, err
    assert 'Traceback' not in err + cap.out and says in err + cap.out, err   # (`data check` prints its report on stdout)
    return err


@pytest.mark.parametrize('args,code,says', [
    (['eval', '--checkpoint', '{tmp}/missing'], 1, 'does not exist'),
    (['eval', '--checkpoint', '{tmp}/empty_run'], 1, 'no *_nets_ema.ckpt'),
    (['sample', '--checkpoint', '{tmp}/missing', '--src', '{tmp}', '--ref', '{tmp}', '--out', '{tmp}/o'], 1, 'missing'),
    (['eval', '--checkpoint', '{run}/checkpoints/000002_optims.ckpt', '--fid', 'none', '--no-lpips'], 1, 'optimiser-state file'),
    (['eval', '--checkpoint', '{tmp}/page.ckpt'], 1, 'HTML page'),
    (['weights', 'inspect', '{tmp}/page.ckpt'], 1, 'not a checkpoint'),
    (['train', '--preset', 'tiny', '--out', '{tmp}/t', '--set', 'batch_size=0'], 1, 'batch_size=0 (must be an integer ≥ 1)'),
    (['train', '--preset', 'tiny', '--out', '{tmp}/t', '--set', 'save_every=0'], 1, 'save_every=0'),
    (['train', '--preset', 'tiny', '--out', '{tmp}/t', '--set', 'lr=abc'], 2, '--set lr=abc: lr takes a number'),
    (['train', '--preset', 'tiny', '--out', '{tmp}/t', '--set', 'nonsense=1'], 2, 'no field'),
    (['train', '--preset', 'tiny', '--out', '{tmp}/t', '--iters', '0'], 2, '--iters 0'),
    (['train', '--preset', 'tiny', '--out', '{tmp}/t', '--iters', '-5'], 2, '--iters -5'),
    (['train', '--preset', 'tiny', '--out', '{tmp}/nowhere', '--resume'], 1, 'no checkpoint to resume from'),
    (['train', '--preset', 'tiny', '--out', '{tmp}/empty_run', '--resume'], 1, 'no checkpoint to resume from'),
    (['train', '--preset', 'tiny', '--out', '{run}', '--iters', '2'], 1, 'already holds checkpoints'),
    (['train', '--preset', 'tiny', '--out', '{run}', '--resume', '--iters', '1'], 1, 'below the 2 iterations'),
    (['train', '--preset', 'tiny', '--out', '{tmp}/t', '--data', '{tmp}/no_data'], 1, 'does not exist'),
    (['train', '--preset', 'tiny', '--out', '{tmp}/t', '--nonsense'], 2, ''),
    (['data', 'check', '{tmp}/missing'], 1, 'does not exist'),
    (['train', '--preset', 'tiny', '--out', '{tmp}/t', '--data', '{tmp}/one'], 1, 'single domain'),
    (['train', '--preset', 'tiny', '--out', '{tmp}/page.ckpt'], 1, 'File exists'),
    (['sample', '--checkpoint', '{run}', '--src', '{tmp}/nowhere', '--ref', '{tmp}', '--out', '{tmp}/o'], 1, 'not a folder'),
])
def test_every_command_fails_in_one_line(run, tmp_path, capsys, args, code, says):
    (tmp_path/'empty_run'/'checkpoints').mkdir(parents=True)
    (tmp_path/'page.ckpt').write_text('<!DOCTYPE html><html><body>Error 429</body></html>')
    for split in ('train', 'val'): (tmp_path/'one'/split/'only').mkdir(parents=True)
    args = [a.format(tmp=tmp_path, run=run) for a in args]
    _one_line_error(capsys, main(args), code, says)


def test_missing_gpu_is_one_line(run, tmp_path, capsys):
    if torch.cuda.is_available(): pytest.skip('has a GPU')
    _one_line_error(capsys, main(['eval', '--checkpoint', str(run), '--device', 'cuda']), 1, 'no CUDA GPU')


def test_eval_and_sample_refuse_nan_weights(run, tmp_path, capsys):
    import shutil
    bad = tmp_path/'nan_run'; shutil.copytree(run, bad)
    f = bad/'checkpoints'/'000002_nets_ema.ckpt'; d = safe_load(f)
    next(iter(d['generator'].values())).view(-1)[0] = float('nan'); torch.save(d, f)
    _one_line_error(capsys, main(['eval', '--checkpoint', str(bad), '--fid', 'none', '--no-lpips']), 1, 'non-finite')
    from stargan_v2.shapes import shapes_path
    val = shapes_path()/'val'
    _one_line_error(capsys, main(['sample', '--checkpoint', str(bad), '--src', str(val), '--ref', str(val), '--out', str(tmp_path/'o')]), 1, 'non-finite')


def test_corrupt_config_json_is_one_line(run, tmp_path, capsys):
    import shutil
    r = tmp_path/'r'; shutil.copytree(run, r); (r/'config.json').write_text('{"img_size": 16,')
    _one_line_error(capsys, main(['eval', '--checkpoint', str(r), '--fid', 'none', '--no-lpips']), 1, 'config.json is not valid JSON')


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError): main(['eval', '--checkpoint', str(tmp_path/'missing'), '--debug'])


def test_resume_extends_a_finished_run(run, tmp_path, capsys):
    import shutil
    r = tmp_path/'r'; shutil.copytree(run, r)
    assert main(['train', '--out', str(r), '--resume', '--device', 'cpu', '--quiet']) == 0       # already done: nothing to do
    assert 'nothing to train' in (r/'log.txt').read_text()
    cfg0 = json.loads((r/'config.json').read_text())
    assert main(['train', '--out', str(r), '--resume', '--iters', '4', '--device', 'cpu', '--quiet']) == 0
    cfg1 = json.loads((r/'config.json').read_text())
    assert _ckpt_steps(r) == [2, 4] and cfg1['total_iters'] == 4 and cfg1['ds_iter'] == cfg0['ds_iter']   # the schedule is the run's own
    assert 'done: iteration 4' in capsys.readouterr().out


# ------------------------------------------------------------------------------- the other methods' run folders
def _other_methods():
    from stargan_v2.v1 import V1Config, train_v1
    from stargan_v2.discogan import DiscoConfig, train_disco
    from stargan_v2.multidata import MaskConfig, train_joint
    kw = dict(total_iters=4, save_every=2, sample_every=100)
    return {'stargan_v1': (train_v1, V1Config.tiny(**kw)), 'discogan': (train_disco, DiscoConfig.tiny(**kw)),
            'stargan_v1_mask': (train_joint, MaskConfig.tiny(**kw))}

@pytest.mark.parametrize('method', ['stargan_v1', 'discogan', 'stargan_v1_mask'])
def test_every_method_locks_its_folder_resumes_past_a_broken_checkpoint_and_refuses_fewer_iters(tmp_path, method):
    "lesson 07's run_folder/resume_run serve every method: the lock, the non-finite fallback and the --iters check are not v2's alone."
    from stargan_v2.core import ConfigError
    fn, cfg = _other_methods()[method]
    run = lambda out, c=cfg, **kw: fn(c, out, verbose=False, progress=False, device='cpu', **kw)
    out = tmp_path/'run'; out.mkdir()
    with run_lock(out):
        with pytest.raises(FolderLockedError): run(out)
    assert not (out/'checkpoints').exists()                                       # nothing written while locked
    run(out)
    f = next((out/'checkpoints').glob('000004_*nets.ckpt')); d = safe_load(f)     # break the newest checkpoint's weights
    next(t for sd in d.values() for t in sd.values() if t.is_floating_point()).view(-1)[0] = float('nan'); torch.save(d, f)
    learn = run(out, cfg.replace(total_iters=5), resume=True)
    assert learn.train_iter == 5 and 'non-finite' in learn.resume_skipped[0]     # resumed from iteration 2, not the broken 4
    with pytest.raises(ConfigError, match='total_iters=3'): run(out, cfg.replace(total_iters=3), resume=True)
