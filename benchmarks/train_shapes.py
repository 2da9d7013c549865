"""Train a Shapes preset of StarGAN v2 and score its EMA networks; time the iteration changes that make it cheaper.

Usage:
  python benchmarks/train_shapes.py [--preset shapes|shapes32] [--threads 1] [--set KEY=VALUE ...] [--out DIR]
  python benchmarks/train_shapes.py --preset shapes32 --curve RUN_DIR      # score every saved checkpoint of a run
  python benchmarks/train_shapes.py --preset shapes32 --speed [--iters 24] [--rounds 3] [--compile]
  python benchmarks/train_shapes.py --time-only N                            # only time N iterations

Training prints: wall time and CPU time (`time.process_time()`, which other jobs on the machine do not inflate),
seconds per iteration, and every Shapes score of `stargan_v2.evaluate.shapes_scores` on all 100 val sources per domain
(target-domain accuracy, position error, hue error to the reference, pattern agreement with the reference and its
chance-corrected κ, diversity, Shapes-FID), and `probe_style_codes` (can the pattern be read from E's style codes of
real images? against the majority share) against the preset's targets:
  shapes:   <= 10 min, accuracy >= 0.90, position error <= 3 px, hue error <= 20 deg, diverse latent outputs;
  shapes32: the same plus pattern agreement with the reference >= 0.80 (issue: <= 10 min; fallback <= 20 min).
`--curve` scores the EMA networks of every checkpoint of a finished run (score against iterations and minutes: CPU
minutes from the run's metrics.json when this script trained it, else the wall time its log lines give).
`--speed` times one iteration of the preset under each change, interleaved in one process (round-robin, so a busy
machine slows every variant alike), and prints each as a ratio against the plain fp32 iteration of the same run:
exact changes (channels-last) and approximations (bf16 autocast, lazy R1 every 4 / 16 iterations), and a larger batch
(compared per image). `--compile` adds torch.compile (its first compile takes minutes on 2 cores; not counted).
Writes the figures to OUT/metrics.json (training) or prints them (curve, speed).
"""
import argparse, json, os, sys, tempfile, time
from pathlib import Path

TARGETS = dict(minutes=10., acc=0.90, pos_err=3., hue_err=20., pattern=0.80)
SCORES = ('acc_latent', 'acc_reference', 'pos_err_latent', 'pos_err_reference', 'hue_err_reference', 'pattern_acc_reference',
          'pattern_kappa_reference', 'diversity_latent', 'diversity_l1_latent', 'patterns_per_source_latent', 'shapes_fid_latent', 'shapes_fid_reference',
          'pattern_code_probe', 'pattern_code_majority')

def _targets(sc:dict, cfg, minutes:float) -> dict:
    ok = dict(time=minutes <= TARGETS['minutes'],
              acc=min(sc['acc_latent'], sc['acc_reference']) >= TARGETS['acc'],
              pos_err=max(sc['pos_err_latent'], sc['pos_err_reference']) <= TARGETS['pos_err'],
              hue_err=sc['hue_err_reference'] <= TARGETS['hue_err'], diversity=sc['diversity_latent'] > 0)
    if cfg.img_size >= 32: ok |= dict(pattern=sc['pattern_acc_reference'] >= TARGETS['pattern'], time_fallback_20min=minutes <= 20)
    return ok

def _score(model, cfg, n):
    from stargan_v2.evaluate import shapes_scores, probe_style_codes
    sc = shapes_scores(model, cfg, n_per_domain=n)
    pr = probe_style_codes(model, cfg, n=n or 100)   # does E's code hold the reference's pattern at all?
    sc |= dict(pattern_code_probe=pr['probe_acc'], pattern_code_majority=pr['majority'])
    return {k: round(float(sc[k]), 4) for k in SCORES if k in sc}

def train_and_score(cfg, a):
    import torch
    from stargan_v2.learner import train
    if a.time_only: cfg = cfg.replace(total_iters=a.time_only, save_every=10**9, sample_every=10**9)
    out = Path(a.out or tempfile.mkdtemp(prefix='shapes_bench_'))
    print(f"config: {cfg}\nthreads: {torch.get_num_threads()}, cpus: {os.cpu_count()}, out: {out}", flush=True)
    t0, c0 = time.time(), time.process_time()
    learn = train(cfg, out, device='cpu', verbose=True, progress=False)
    wall, cpu = time.time() - t0, time.process_time() - c0
    res = dict(preset=cfg.name, train_seconds=round(wall, 1), train_cpu_seconds=round(cpu, 1), iters=cfg.total_iters,
               s_per_iter=round(wall / cfg.total_iters, 4), cpu_s_per_iter=round(cpu / cfg.total_iters, 4), threads=torch.get_num_threads())
    if not a.time_only:
        t1 = time.time(); sc = _score(learn.nets_ema, cfg, a.n_per_domain)
        res |= sc | dict(eval_seconds=round(time.time() - t1, 1), targets_met=_targets(sc, cfg, cpu / 60))
    (out/'metrics.json').write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))

def curve(run, a):
    "Scores of the EMA networks of every checkpoint in a run, with the CPU minutes the log says each took."
    import re
    from stargan_v2.translator import load_translator
    ck = sorted(Path(run, 'checkpoints').glob('*_nets_ema.ckpt'))
    if not ck: raise SystemExit(f"{run}: no checkpoints/*_nets_ema.ckpt; pass a run folder trained with save_every set")
    met = Path(run, 'metrics.json')
    cpu_spi = json.loads(met.read_text()).get('cpu_s_per_iter') if met.is_file() else None
    spi = [float(m.group(1)) for m in re.finditer(r'\| ([0-9.]+) s/it \|', Path(run, 'log.txt').read_text())]
    mean_spi, what = (cpu_spi, 'CPU') if cpu_spi else (sum(spi) / len(spi) if spi else float('nan'), 'mean logged wall')
    rows = []
    for f in ck:
        it = int(f.name[:6]); cfg, tr = load_translator(f, device='cpu')
        rows.append(dict(iter=it, minutes=round(it * mean_spi / 60, 2)) | _score(tr, cfg, a.n_per_domain))
        print(json.dumps(rows[-1]), flush=True)
    cols = ['iter', 'minutes'] + [k for k in SCORES if k in rows[0]]
    print('| ' + ' | '.join(cols) + ' |\n|' + '---|' * len(cols))
    for r in rows: print('| ' + ' | '.join(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols) + ' |')
    print(f"(minutes = iterations × the run's {what} {mean_spi:.3f} s/it)")

def speed(cfg, a):
    "Round-robin timing of the preset's iteration under each change, as ratios against plain fp32 in the same run."
    import torch
    from stargan_v2.core import set_seed
    from stargan_v2.data import get_dls
    from stargan_v2.learner import stargan_learner, _fit
    from stargan_v2.scale import scale_learner
    base = cfg.replace(precision='fp32', r1_every=1, compile=False, channels_last=False, save_every=10**9,
                       sample_every=10**9, print_every=10**9)
    variants = {'fp32 (the plain iteration)': base, 'channels-last (exact)': base.replace(channels_last=True),
                'bf16 autocast, R1 in fp32 (approximation)': base.replace(precision='bf16'),
                'lazy R1 every 4, weight x4 (not the paper)': base.replace(r1_every=4),
                'lazy R1 every 16, weight x16 (not the paper)': base.replace(r1_every=16),
                f'batch {2 * cfg.batch_size} (per image)': base.replace(batch_size=2 * cfg.batch_size)}
    if a.compile: variants['torch.compile of G, F, E, D (exact up to rounding)'] = base.replace(compile=True)
    learners = {}
    for name, c in variants.items():
        set_seed(c.seed); learn = stargan_learner(get_dls(c, device='cpu'), c, verbose=False); scale_learner(learn, c, None)
        _fit(learn, max(a.iters // 4, 16 if c.r1_every > 1 else 2), False)   # warm-up (and compile) outside the timing
        learners[name] = learn
    wall = {n: [] for n in variants}; cpu = {n: [] for n in variants}
    for r in range(a.rounds):
        for name, learn in learners.items():
            n = a.iters
            t, c = time.perf_counter(), time.process_time(); _fit(learn, n, False)
            wall[name].append((time.perf_counter() - t) / n); cpu[name].append((time.process_time() - c) / n)
    per_img = lambda name: variants[name].batch_size
    ref = min(cpu['fp32 (the plain iteration)']) / base.batch_size
    print(f"preset {cfg.name}, {cfg.img_size} px, batch {cfg.batch_size}, {torch.get_num_threads()} thread(s), {a.rounds} rounds × "
          f"{a.iters} iterations per variant (best round; CPU seconds of this process)\n")
    print('| change | CPU s/it | wall s/it | ratio to fp32 (per image) |\n|---|---|---|---|')
    for name in variants:
        b = min(cpu[name])
        print(f"| {name} | {b:.4f} | {min(wall[name]):.4f} | {b / per_img(name) / ref:.2f}× |")

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--preset', default='shapes', help="'shapes' (16 px, the default of `stargan_v2 train`) or 'shapes32'")
    p.add_argument('--out', default=None, help='run folder (default: a new temporary folder)')
    p.add_argument('--threads', type=int, default=None, help='torch threads (default: torch default)')
    p.add_argument('--set', nargs='*', default=[], metavar='KEY=VALUE', help='override preset fields')
    p.add_argument('--time-only', type=int, default=0, metavar='N', help='only time N iterations (no scores)')
    p.add_argument('--n-per-domain', type=int, default=100, help='val sources per domain for the scores (default: all 100)')
    p.add_argument('--curve', default=None, metavar='RUN', help='score every checkpoint of a finished run instead of training')
    p.add_argument('--speed', action='store_true', help='time the iteration changes instead of training')
    p.add_argument('--iters', type=int, default=24, help='--speed: iterations per variant per round')
    p.add_argument('--rounds', type=int, default=3, help='--speed: rounds')
    p.add_argument('--compile', action='store_true', help='--speed: also time torch.compile')
    a = p.parse_args(argv)
    import torch
    if a.threads: torch.set_num_threads(a.threads)
    from stargan_v2.core import get_config
    from stargan_v2.learner import _coerce
    cfg = get_config(a.preset)
    cfg = cfg.replace(**dict(_coerce(cfg, kv) for kv in a.set))
    if a.curve: curve(a.curve, a)
    elif a.speed: speed(cfg, a)
    else: train_and_score(cfg, a)
    return 0

if __name__ == '__main__': sys.exit(main())
