"""The lineage table of lesson 14: every method's Shapes preset under the same CPU budget, scored by one ruler.

Usage:
  python benchmarks/train_lineage.py --from-committed              # score the committed models (about 2 CPU min)
  python benchmarks/train_lineage.py --train [--minutes 9] [--jobs 2] # train every preset here, then score (about 1 h of one thread)
  python benchmarks/train_lineage.py --train --train-seed 1 [--jobs 2]  # the same with another training seed: the seed spread
  python benchmarks/train_lineage.py --train --preset tiny --minutes 0.05 --probe 2 --n-per-domain 4   # the CI-sized version

Every method gets the same number of CPU minutes on one thread (`--train`): its preset's iteration count is replaced by
what fits the budget (timed on two short probes) and its schedule lengths are scaled with it; two one-thread jobs run side
by side (`--jobs 2`, the 2-core machine). With `--from-committed` the rows are the models committed in stargan_v2/trained/,
whose training time, iterations and command come from their manifests (their budgets are the presets', not equal).
Either way every model is scored by `stargan_v2.evaluate.shapes_scores` on the same sources, references and z, and the
script writes OUT/lineage.csv, lineage.md, lineage.png (the figure) and lineage.json (the command and the times); for the
full settings OUT is stargan_v2/trained/lineage (committed models) or stargan_v2/trained/lineage_equal (equal budget).
Rows whose lesson is not in this version (lessons 12a and 12b) are listed as skipped, with the reason.
"""
import argparse, json, os, sys, time
from pathlib import Path

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument('--from-committed', action='store_true', help='score the committed models in stargan_v2/trained/')
    g.add_argument('--train', action='store_true', help='train every preset under the same CPU budget, then score')
    p.add_argument('--only', nargs='+', default=None, help='some rows only (keys: identity copy_reference stargan_v2 stargan_v1 '
                   'stargan_v1_sa stargan_v1_joint discogan)')
    p.add_argument('--preset', default='shapes', choices=['shapes', 'tiny'])
    p.add_argument('--minutes', type=float, default=9., help='CPU minutes of one thread per method (default 9)')
    p.add_argument('--jobs', type=int, default=2, help='one-thread training jobs side by side (default 2)')
    p.add_argument('--probe', type=int, default=25, help='iterations of each timing probe (default 25)')
    p.add_argument('--runs', default=None, help='folder for the training runs (default: a new temporary folder)')
    p.add_argument('--n-per-domain', type=int, default=100, help='validation sources per domain (default: all 100)')
    p.add_argument('--num-outs', type=int, default=10)
    p.add_argument('--seed', type=int, default=0, help='seeds z and the reference draws of the scores (the same for every method)')
    p.add_argument('--train-seed', type=int, default=None, help="--train: every method's training seed (default: each preset's "
                   "own); the full settings then write stargan_v2/trained/lineage_equal_seed<N>, a second point for the seed spread")
    p.add_argument('--out', default=None, help='output folder (default for the full settings: stargan_v2/trained/lineage (--from-committed) or '
                   'stargan_v2/trained/lineage_equal (--train), package data, so lesson 14 shows them after pip install; else a temporary folder)')
    a = p.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    from stargan_v2.compare import run_lineage, write_lineage, lineage_markdown, claim_checks, claims_markdown
    full = a.preset == 'shapes' and a.n_per_domain == 100 and a.num_outs == 10 and a.only is None
    pkg = Path(__file__).resolve().parents[1]/'stargan_v2'/'trained'
    out = Path(a.out) if a.out else (pkg/('lineage' if a.from_committed else 'lineage_equal' + ('' if a.train_seed is None else f'_seed{a.train_seed}')) if full else Path(os.environ.get('TMPDIR', '/tmp'))/'lineage')
    t0, c0 = time.time(), time.process_time()
    df, entries = run_lineage('committed' if a.from_committed else 'train', a.only, a.preset, a.minutes, a.jobs, a.probe, a.runs,
                              a.n_per_domain, a.num_outs, a.seed, train_seed=a.train_seed)
    cmd = 'python benchmarks/train_lineage.py ' + ' '.join(argv if argv is not None else sys.argv[1:])
    from stargan_v2.trained import _git_commit
    meta = dict(command=cmd.strip(), commit=_git_commit(), wall_seconds=round(time.time() - t0, 1),
                main_process_cpu_seconds=round(time.process_time() - c0, 1), threads=1, cpus=os.cpu_count(),
                settings=dict(n_per_domain=a.n_per_domain, num_outs=a.num_outs, seed=a.seed, preset=a.preset,
                              minutes=a.minutes if a.train else None, jobs=a.jobs if a.train else None,
                              train_seed=a.train_seed))
    paths = write_lineage(df, entries, out, meta, seed=a.seed)
    print(lineage_markdown(df) + '\n\n' + claims_markdown(claim_checks(df)))
    print('wrote ' + ', '.join(str(v) for v in paths.values()) + f' ({time.time() - t0:.0f} s)')
    return 0

if __name__ == '__main__': sys.exit(main())
