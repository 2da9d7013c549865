"""Train a StarGAN v1 Shapes preset (lesson 12; `--preset shapes_sa`: lesson 12a) and print its time and every Shapes score.

Usage:  python benchmarks/train_v1.py [--preset shapes|shapes_sa] [--out DIR] [--threads 1] [--set KEY=VALUE ...] [--time-only N] [--save-trained]

Prints: wall time of training, seconds per iteration, iterations and G/D updates, and every key of
`stargan_v2.evaluate.shapes_scores` for the trained generator (a deterministic `Translator`: scored once per source),
against the issue's targets: train <= 10 min on one CPU thread, target-domain accuracy >= 0.90, position error <= 3 px,
diversity exactly 0. Writes the same figures to OUT/metrics.json. With --save-trained (and the full preset) it also
writes the generator (fp16) and a manifest (command, commit, seed, scores, SHA-256) to stargan_v2/trained/stargan_v1_shapes/
in the layout of lesson 07a's committed models.
"""
import argparse, json, os, sys, tempfile, time
from pathlib import Path

TARGETS = dict(minutes=10., acc=0.90, pos_err=3.)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default=None, help='run folder (default: a new temporary folder)')
    p.add_argument('--threads', type=int, default=1, help='torch threads (default 1)')
    p.add_argument('--preset', default='shapes', help="V1Config preset: shapes (default) or shapes_sa (lesson 12a)")
    p.add_argument('--set', nargs='*', default=[], metavar='KEY=VALUE', help='override fields of the preset')
    p.add_argument('--time-only', type=int, default=0, metavar='N', help='only time N iterations (no scores)')
    p.add_argument('--n-per-domain', type=int, default=100, help='val sources per domain for the scores (default: all 100)')
    p.add_argument('--save-trained', action='store_true', help='write the generator + manifest to stargan_v2/trained/')
    a = p.parse_args(argv)
    import torch
    torch.set_num_threads(a.threads)
    from stargan_v2.v1 import V1Config, train_v1, _coerce
    cfg = getattr(V1Config, a.preset)()
    cfg = cfg.replace(**dict(_coerce(cfg, kv) for kv in a.set))
    if a.time_only: cfg = cfg.replace(total_iters=a.time_only, save_every=10**9, sample_every=10**9)
    out = Path(a.out or tempfile.mkdtemp(prefix='v1_bench_'))
    print(f"config: {cfg}\nthreads: {torch.get_num_threads()}, cpus: {os.cpu_count()}, out: {out}", flush=True)
    t0, c0 = time.time(), time.process_time()
    learn = train_v1(cfg, out, device='cpu', verbose=True, progress=False)
    wall = time.time() - t0
    res = dict(preset=a.preset, cpu_seconds=round(time.process_time() - c0, 1), train_seconds=round(wall, 1), iters=cfg.total_iters, d_updates=cfg.total_iters, g_updates=cfg.total_iters // cfg.n_critic,
               s_per_iter=round(wall / cfg.total_iters, 4), threads=torch.get_num_threads())
    if not a.time_only:
        from stargan_v2.evaluate import shapes_scores
        t1 = time.time()
        sc = shapes_scores(learn.make_translator(), cfg, n_per_domain=a.n_per_domain)
        res |= {k: round(v, 4) for k, v in sc.items() if isinstance(v, float)} | dict(eval_seconds=round(time.time() - t1, 1))
        acc = [v for k, v in sc.items() if k.startswith('acc') and isinstance(v, float)]
        pos = [v for k, v in sc.items() if k.startswith('pos_err') and isinstance(v, float)]
        div = [v for k, v in sc.items() if k.startswith('diversity') and isinstance(v, float)]
        res['targets_met'] = dict(time=wall / 60 <= TARGETS['minutes'], acc=min(acc) >= TARGETS['acc'],
                                  pos_err=max(pos) <= TARGETS['pos_err'], diversity_zero=all(v == 0 for v in div))
        if a.save_trained and a.preset == 'shapes':
            cmd = 'python benchmarks/train_v1.py ' + ' '.join(argv if argv is not None else sys.argv[1:])
            from stargan_v2.v1 import export_v1_trained
            res['saved'] = str(export_v1_trained(out, 'stargan_v1_shapes', cmd.strip(), train_seconds=res['train_seconds']))
    (out/'metrics.json').write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return 0

if __name__ == '__main__': sys.exit(main())
