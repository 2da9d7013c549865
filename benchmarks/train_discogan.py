"""Train the DiscoGAN `shapes` preset (all three pairs of Shapes in one learner, one thread) and score it.

Usage:  python benchmarks/train_discogan.py [--out DIR] [--threads 1] [--set KEY=VALUE ...] [--ablation] [--save-trained]
                                            [--time-only N] [--n-per-domain 100]

Prints: wall-clock and process CPU time of training (on a shared CPU the CPU time is the fair figure), seconds per
iteration, every Shapes score of `stargan_v2.evaluate.shapes_scores` (mean over the 6 tasks) of the sampled G's (the EMA
ones when `ema_beta` > 0, with three scores of the last trained G's beside them) with DiscoGAN's eval-mode BN
and with the official train-mode BN, the per-task hue relation (circular correlation, hue bins covered), and the targets
of issue #14: all pairs <= 10 min, target-domain accuracy >= 0.90, position error <= 3 px.
--ablation also trains circle<->square with arch gan, recongan and discogan (same settings) and prints the paper's ablation.
--save-trained writes the generators, config, scores and hue tables to stargan_v2/trained/discogan/shapes/.
--merge-ablation DIR ... adds the ablation of earlier `--ablation --only-ablation` runs (e.g. one per arch, run side by side) to that folder.
"""
import argparse, json, os, sys, tempfile, time
from pathlib import Path

TARGETS = dict(minutes=10., acc=0.90, pos_err=3.)

def _train(cfg, out):
    from stargan_v2.discogan import train_disco
    t0, c0 = time.time(), time.process_time()
    learn = train_disco(cfg, out, device='cpu', verbose=True, progress=False)
    return learn, time.time() - t0, time.process_time() - c0

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default=None, help='folder for the runs (default: a new temporary folder)')
    p.add_argument('--threads', type=int, default=1, help='torch threads (default 1)')
    p.add_argument('--set', nargs='*', default=[], metavar='KEY=VALUE', help='override DiscoConfig.shapes() fields')
    p.add_argument('--ablation', action='store_true', help='also run gan / recongan / discogan on circle<->square')
    p.add_argument('--only-ablation', action='store_true', help='skip the all-pairs run (with --ablation)')
    p.add_argument('--archs', nargs='+', default=['gan', 'recongan', 'discogan'], help='which ablation runs (default: all three)')
    p.add_argument('--save-trained', action='store_true', help='export into stargan_v2/trained/discogan/shapes')
    p.add_argument('--time-only', type=int, default=0, metavar='N', help='only time N iterations (no scores)')
    p.add_argument('--n-per-domain', type=int, default=100, help='val sources per domain for the scores')
    p.add_argument('--merge-ablation', nargs='+', default=None, metavar='DIR',
                   help='only merge the ablation rows and hue tables of earlier --only-ablation runs (their --out folders) into the committed model')
    a = p.parse_args(argv)
    if a.merge_ablation: return merge_ablation([Path(d) for d in a.merge_ablation])
    import torch, numpy as np, pandas as pd
    torch.set_num_threads(a.threads)
    from stargan_v2.discogan import (DiscoConfig, load_translator, disco_scores, hue_relation, hue_summary, _coerce,
                                     export_disco_trained, DiscoTranslator)
    from stargan_v2.evaluate import shapes_scores, load_split
    from stargan_v2.shapes import shapes_path
    cfg = DiscoConfig.shapes()
    cfg = cfg.replace(**dict(_coerce(cfg, kv) for kv in a.set))
    if a.time_only: cfg = cfg.replace(total_iters=a.time_only, save_every=10**9, sample_every=10**9)
    out = Path(a.out or tempfile.mkdtemp(prefix='discogan_bench_')); out.mkdir(parents=True, exist_ok=True)
    print(f"config: {cfg}\nthreads: {torch.get_num_threads()}, cpus: {os.cpu_count()}, load: {os.getloadavg()}, out: {out}", flush=True)
    res = {}
    if a.only_ablation: a.time_only, a.save_trained = 1, False   # nothing of the main run to score or save
    else:
      learn, wall, cpu = _train(cfg, out/'all_pairs')
      res = dict(train_wall_seconds=round(wall, 1), train_cpu_seconds=round(cpu, 1), iters=cfg.total_iters,
               cpu_s_per_iter=round(cpu / cfg.total_iters, 4), threads=torch.get_num_threads(), load_after=os.getloadavg())
    if not a.time_only:
        doms = learn.dls.domains
        sampled = learn.nets_ema if cfg.ema_beta > 0 else learn.model   # what the run samples: the EMA G's if it keeps them
        if cfg.ema_beta > 0:   # the last trained G's beside them, for comparison
            sc = shapes_scores(DiscoTranslator(learn.model, cfg, doms), cfg, n_per_domain=a.n_per_domain, num_outs=1)
            res['shapes_scores_trained_g'] = {k: round(sc[k], 4) for k in ('acc_latent', 'pos_err_latent', 'shapes_fid_latent')}
        for bn in ('eval', 'batch'):
            tr = DiscoTranslator(sampled, cfg, doms, bn=bn)
            sc = shapes_scores(tr, cfg, n_per_domain=a.n_per_domain, num_outs=1)
            res[f'shapes_scores_bn_{bn}'] = {k: round(v, 4) for k, v in sc.items() if isinstance(v, float)}
            res[f'tasks_bn_{bn}'] = {t: {k: round(v, 4) for k, v in r.items() if k in ('acc_latent', 'pos_err_latent', 'hue_corr_source_latent')}
                                     for t, r in sc['tasks'].items()}
            if bn == 'eval':
                ds = disco_scores(tr, cfg.img_size, n_per_domain=a.n_per_domain)
                res['hue_relation'] = {t: {k: round(r[k], 3) for k in ('hue_corr_source', 'hue_bins_out', 'hue_bins_src', 'acc')} for t, r in ds['tasks'].items()}
        s = res['shapes_scores_bn_eval']
        res['targets_met'] = dict(time_cpu=cpu / 60 <= TARGETS['minutes'], time_wall=wall / 60 <= TARGETS['minutes'],
                                  acc=s['acc_latent'] >= TARGETS['acc'], pos_err=s['pos_err_latent'] <= TARGETS['pos_err'],
                                  diversity_zero=s['diversity_l1_latent'] == 0)
    def save(extra_csv=None):
        (out/'metrics.json').write_text(json.dumps(res, indent=1, default=float))
        if not (a.save_trained and not a.time_only): return
        import stargan_v2
        extra = {'hues.csv': hue.to_csv(index=False)} | ({'ablation_hues.csv': extra_csv} if extra_csv else {})
        cmd = 'python benchmarks/train_discogan.py --threads 1' + (' --ablation' if a.ablation else '') + ' --save-trained' + (f" --set {' '.join(a.set)}" if a.set else '')
        m = export_disco_trained(out/'all_pairs', Path(stargan_v2.__file__).parent/'trained'/'discogan'/'shapes', cmd, res, extra)
        print(f"wrote {m}", flush=True)
    if not a.time_only:
        va = load_split(shapes_path(), doms, cfg.img_size, n=a.n_per_domain)
        tr = DiscoTranslator(sampled, cfg, doms)
        hue = pd.concat([hue_relation(tr, va[doms[s]], s, t).assign(task=f'{doms[s]}2{doms[t]}')
                         for s in range(3) for t in range(3) if s != t], ignore_index=True).round(2)
    print(json.dumps(res, indent=1, default=float), flush=True)
    save()
    if a.ablation:
        val = load_split(shapes_path(), ['circle', 'square', 'triangle'], cfg.img_size, n=a.n_per_domain)['circle']
        abl, hues = {}, []
        for arch in a.archs:
            c = cfg.replace(arch=arch, pairs='0-1')
            l, w, cp = _train(c, out/f'ablation_{arch}')
            tr = l.make_translator()   # the EMA G's if the preset keeps them
            r = disco_scores(tr, c.img_size, n_per_domain=a.n_per_domain, tasks=[(0, 1)])['tasks']['circle2square']
            df = hue_relation(tr, val, 0, 1); df.insert(0, 'arch', arch); hues.append(df)
            abl[arch] = {k: round(float(r[k]), 3) for k in ('acc', 'pos_err', 'hue_err_source', 'hue_corr_source', 'hue_bins_out', 'shapes_fid')} | dict(train_cpu_seconds=round(cp, 1))
            res['ablation_circle2square'] = abl
            print(arch, abl[arch], flush=True)
            csv = pd.concat(hues, ignore_index=True).round(2).to_csv(index=False)
            (out/'ablation_hues.csv').write_text(csv); save(csv)
    return 0

def merge_ablation(dirs):
    "Put the ablation of separate --only-ablation runs (one arch each) into stargan_v2/trained/discogan/shapes: rows, hue table, manifest."
    import pandas as pd, stargan_v2
    from stargan_v2.core import file_sha256
    dest = Path(stargan_v2.__file__).parent/'trained'/'discogan'/'shapes'
    man = json.loads((dest/'manifest.json').read_text())
    abl, csvs = {}, []
    for d in dirs:
        abl |= json.loads((d/'metrics.json').read_text())['ablation_circle2square']
        csvs.append(pd.read_csv(d/'ablation_hues.csv'))
    (dest/'ablation_hues.csv').write_text(pd.concat(csvs, ignore_index=True).to_csv(index=False))
    man['scores']['ablation_circle2square'] = abl
    man['ablation_command'] = ('python benchmarks/train_discogan.py --threads 1 --ablation --only-ablation --archs ARCH --out DIR '
                               f"(one run per arch: {', '.join(abl)}), then --merge-ablation DIR ...")
    man['files'] = {f.name: {'bytes': f.stat().st_size, 'sha256': file_sha256(f)} for f in sorted(dest.iterdir()) if f.name != 'manifest.json'}
    (dest/'manifest.json').write_text(json.dumps(man, indent=1, default=float))
    print(f"merged {list(abl)} into {dest/'manifest.json'}", flush=True)
    return 0

if __name__ == '__main__': sys.exit(main())
