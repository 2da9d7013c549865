"""Does every CPU preset fit its 10-minute budget on *this* machine? Times one iteration of each and predicts the run.

Usage:  python benchmarks/budget.py [--iters 30] [--warmup 5] [--only NAME ...]

The course's CPU budgets (issues #13, #14, #19: "<= 10 minutes on this 2-core CPU, one thread") were calibrated on the
machine of the session that made each preset. CPUs differ (AVX-512 or only AVX2, clock, cache), so a preset that
took 9 minutes there can take 20 here. For every Shapes preset the lessons train, this script runs `--iters`
iterations of the real training loop (the library's own `train`, `train_v1`, `train_disco`, `train_joint`: data,
losses, optimisers, callbacks) with one torch thread, measures the process CPU time per iteration after `--warmup`
iterations, and prints:

- the predicted CPU minutes of the preset's full run here (s/iteration x its iterations; checkpoints, grids and the
  final scoring are not included) and whether that fits 10 minutes;
- the s/iteration recorded when the committed model of that preset was trained (its manifest's CPU time; `wall` when
  only the wall-clock time of a shared machine was recorded: then no ratio), and this machine's time as a ratio to it;
- the CPU (model name, the instruction set PyTorch uses) and a fixed 3x3-convolution probe, so figures from two
  machines can be compared.

Other jobs on the machine inflate wall time, not much CPU time; run it alone for the cleanest figures.
"""
import argparse, json, os, platform, sys, tempfile, time
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parents[1]

def presets():
    "name -> (config, train function, committed model folder or None)."
    from stargan_v2.core import Config
    from stargan_v2.learner import train
    from stargan_v2.v1 import V1Config, train_v1
    from stargan_v2.discogan import DiscoConfig, train_disco
    from stargan_v2.multidata import MaskConfig, train_joint
    t = ROOT/'stargan_v2'/'trained'
    return {'v2 shapes': (Config.shapes(), train, t/'shapes'),
            'v2 shapes32': (Config.shapes32(), train, t/'shapes32'),
            'v1 shapes': (V1Config.shapes(), train_v1, t/'stargan_v1_shapes'),
            'v1 shapes_sa': (V1Config.shapes_sa(), train_v1, t/'stargan_v1_sa_shapes'),
            'discogan shapes': (DiscoConfig.shapes(), train_disco, t/'discogan'/'shapes'),
            'v1 joint (mask) shapes': (MaskConfig.shapes(), train_joint, None)}

def recorded(folder) -> tuple:   # (s/iteration, 'cpu' | 'wall') from a committed model's manifest, or (None, '')
    f = folder and Path(folder)/'manifest.json'
    if not f or not f.is_file(): return None, ''
    m = json.loads(f.read_text()); sc = m.get('scores', {})
    iters = m.get('iterations') or m.get('iters') or sc.get('iters')
    cpu = m.get('train_cpu_seconds') or sc.get('train_cpu_seconds')
    if iters and cpu: return cpu / iters, 'cpu'
    wall = m.get('train_seconds') or sc.get('train_wall_seconds')
    return (wall / iters, 'wall') if iters and wall else (None, '')

def time_preset(cfg, train_fn, iters:int, warmup:int) -> float:
    "Process CPU seconds per iteration of `train_fn` on `cfg`, iterations `warmup`+1 .. `warmup`+`iters`."
    from fastai.callback.core import Callback
    stamps = []
    class Stamp(Callback):
        order = 100
        def after_batch(self): stamps.append(time.process_time())
    cfg = cfg.replace(total_iters=iters + warmup, save_every=10**9, sample_every=10**9, print_every=10**9)
    with tempfile.TemporaryDirectory(prefix='budget_') as out:
        train_fn(cfg, Path(out)/'run', device='cpu', verbose=False, progress=False, cbs=[Stamp()])
    return (stamps[-1] - stamps[warmup - 1]) / (len(stamps) - warmup)

def conv_probe(reps:int=20) -> float:
    "Milliseconds of one forward + backward of a 3x3 conv, 64 -> 64 channels, on (32, 64, 16, 16): best of `reps`."
    x, c = torch.randn(32, 64, 16, 16), torch.nn.Conv2d(64, 64, 3, padding=1)
    best = float('inf')
    for _ in range(reps):
        t = time.process_time(); c(x).sum().backward(); best = min(best, time.process_time() - t)
    return best * 1e3

def cpu_name() -> str:
    try:
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'): return line.split(':', 1)[1].strip()
    except OSError: pass
    return platform.processor() or platform.machine()

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--iters', type=int, default=30, help='timed iterations per preset (default 30)')
    p.add_argument('--warmup', type=int, default=5, help='untimed iterations first (default 5)')
    p.add_argument('--only', nargs='*', default=None, metavar='NAME', help='presets to time (default: all), e.g. "discogan shapes"')
    p.add_argument('--budget', type=float, default=10., help='CPU minutes allowed (default 10)')
    a = p.parse_args(argv)
    if a.iters < 1 or a.warmup < 1: p.error('--iters and --warmup must be at least 1')
    torch.set_num_threads(1)
    todo = presets()
    unknown = [n for n in a.only or [] if n not in todo]
    if unknown: p.error(f"unknown preset(s) {unknown}; choose from {list(todo)}")
    print(f"CPU: {cpu_name()} | {os.cpu_count()} cores | PyTorch {torch.__version__}, ISA {torch.backends.cpu.get_cpu_capability()} | "
          f"conv probe {conv_probe():.1f} ms (one thread)", flush=True)
    print(f"{'preset':24s} {'iters':>6s} {'s/it here':>9s} {'CPU-min here':>12s} {'fits ' + format(a.budget, 'g') + ' min':>11s} "
          f"{'s/it recorded':>14s} {'here / recorded':>15s}", flush=True)
    rows = []
    for name, (cfg, fn, folder) in todo.items():
        if a.only and name not in a.only: continue
        s = time_preset(cfg, fn, a.iters, a.warmup)
        ref, kind = recorded(folder)
        minutes = s * cfg.total_iters / 60
        ratio = s / ref if kind == 'cpu' else None   # a wall time of a shared machine is no reference for CPU time
        rows.append(dict(preset=name, iters=cfg.total_iters, s_per_iter=round(s, 4), cpu_minutes=round(minutes, 1),
                         fits=minutes <= a.budget, recorded_s_per_iter=ref and round(ref, 4), recorded_kind=kind,
                         ratio=ratio and round(ratio, 2)))
        print(f"{name:24s} {cfg.total_iters:6d} {s:9.3f} {minutes:12.1f} {'yes' if minutes <= a.budget else 'NO':>11s} "
              f"{'' if ref is None else format(ref, '.3f') + ' (' + kind + ')':>14s} {'' if ratio is None else format(ratio, '.2f') + 'x':>15s}", flush=True)
    print(json.dumps(dict(cpu=cpu_name(), isa=torch.backends.cpu.get_cpu_capability(), rows=rows)))

if __name__ == '__main__': main()
