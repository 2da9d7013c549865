"""Train the `shapes` preset and score its EMA networks on the Shapes val split.

Usage:  python benchmarks/train_shapes.py [--out DIR] [--threads N] [--set KEY=VALUE ...] [--time-only N]

Prints: wall time of training, seconds per iteration, and the Shapes scores of `stargan_v2.evaluate.shapes_scores`
(target-domain accuracy, position error, hue error to the reference, diversity) against the targets of the
`shapes` preset: train <= 10 min on a 2-core CPU, accuracy >= 90 %, position error <= 3 px, reference hue error <= 20 deg,
latent outputs of one source differ from each other. Writes the same figures to OUT/metrics.json.
"""
import argparse, json, os, sys, tempfile, time
from pathlib import Path

TARGETS = dict(minutes=10., acc=0.90, pos_err=3., hue_err=20.)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default=None, help='run folder (default: a new temporary folder)')
    p.add_argument('--threads', type=int, default=None, help='torch threads (default: torch default)')
    p.add_argument('--set', nargs='*', default=[], metavar='KEY=VALUE', help='override Config.shapes() fields')
    p.add_argument('--time-only', type=int, default=0, metavar='N', help='only time N iterations (no scores)')
    p.add_argument('--n-per-domain', type=int, default=None, help='val sources per domain for the scores (default: all)')
    a = p.parse_args(argv)
    import torch
    if a.threads: torch.set_num_threads(a.threads)
    from stargan_v2.core import Config
    from stargan_v2.learner import train, _coerce
    cfg = Config.shapes()
    cfg = cfg.replace(**dict(_coerce(cfg, kv) for kv in a.set))
    if a.time_only: cfg = cfg.replace(total_iters=a.time_only, save_every=10**9, sample_every=10**9)
    out = Path(a.out or tempfile.mkdtemp(prefix='shapes_bench_'))
    print(f"config: {cfg}\nthreads: {torch.get_num_threads()}, cpus: {os.cpu_count()}, out: {out}", flush=True)
    t0 = time.time()
    learn = train(cfg, out, device='cpu', verbose=True, progress=False)
    wall = time.time() - t0
    res = dict(train_seconds=round(wall, 1), iters=cfg.total_iters, s_per_iter=round(wall / cfg.total_iters, 4),
               threads=torch.get_num_threads())
    if not a.time_only:
        from stargan_v2.evaluate import shapes_scores
        t1 = time.time()
        sc = shapes_scores(learn.nets_ema, cfg, n_per_domain=a.n_per_domain or 100)
        res |= {k: round(v, 4) for k, v in sc.items() if isinstance(v, float)} | dict(eval_seconds=round(time.time() - t1, 1))
        ok = dict(time=wall / 60 <= TARGETS['minutes'],
                  acc=min(sc['acc_latent'], sc['acc_reference']) >= TARGETS['acc'],
                  pos_err=max(sc['pos_err_latent'], sc['pos_err_reference']) <= TARGETS['pos_err'],
                  hue_err=sc['hue_err_reference'] <= TARGETS['hue_err'],
                  diversity=sc['diversity_latent'] > 0)
        res['targets_met'] = ok
    (out/'metrics.json').write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return 0

if __name__ == '__main__': sys.exit(main())
