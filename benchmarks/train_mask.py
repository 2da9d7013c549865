"""Lesson 12b's experiments: train the joint model JNT (Shapes-form + Shapes-colour, mask vector) and the colour-only model SNG, then print every figure.

Usage:  python benchmarks/train_mask.py [--out DIR] [--run jnt|sng|both|none] [--threads 1] [--iters N] [--set KEY=VALUE ...]
                                        [--n-per-domain 100] [--save]

Each run trains `MaskConfig.shapes()` (lesson 12's Shapes networks and schedule; datasets='form+colour' for JNT,
'colour' for SNG) into OUT/jnt and OUT/sng (resumed if already there; --run none only scores) and records its CPU time
(time.process_time) in OUT/<run>/train_time.json. Then it scores both with `mask_experiments`: JNT vs SNG colour
accuracy / shape kept / position error on the validation shapes, JNT with the wrong mask, the two-pass translator's
target accuracy and hue error to the reference (and the 60° quantisation floor), and prints them as JSON (also
OUT/results.json). --save also writes the small committed files of lesson 12b to stargan_v2/trained/stargan_v1_mask/:
results.json (with this command and the commit), grid.png (the joint sample rows), config.json and nets.ckpt (JNT's
generator in fp16, used by lesson 14's two-pass row).
"""
import argparse, json, os, subprocess, sys, time
from dataclasses import asdict
from pathlib import Path

def _train(name, cfg, out, threads):
    import torch
    from stargan_v2.multidata import train_joint
    from stargan_v2.callbacks import latest_state
    last = latest_state(out)
    if last is not None and int(last.name[:6]) >= cfg.total_iters: print(f"{name}: already trained ({last.name})", flush=True); return
    f = out/'train_time.json'
    prev = json.loads(f.read_text()) if f.exists() else dict(cpu_seconds=0., wall_seconds=0.)
    c0, w0 = time.process_time(), time.time()
    print(f"{name}: training {cfg.datasets} for {cfg.total_iters} iterations into {out}", flush=True)
    train_joint(cfg, out, device='cpu', resume=True, verbose=True, progress=False)
    out.mkdir(parents=True, exist_ok=True)
    t = dict(cpu_seconds=round(prev['cpu_seconds'] + time.process_time() - c0, 1), wall_seconds=round(prev['wall_seconds'] + time.time() - w0, 1),
             threads=torch.get_num_threads(), iters=cfg.total_iters)
    f.write_text(json.dumps(t))
    print(f"{name}: {t}", flush=True)

def _save(out, res, cmd):
    import torch
    import matplotlib; matplotlib.use('Agg')
    from stargan_v2.core import atomic_save, show_grid
    from stargan_v2.checkpoints import safe_load, latest_checkpoint
    from stargan_v2.evaluate import load_split
    from stargan_v2.shapes import shapes_path, SHAPE_DOMAINS
    from stargan_v2.trained import trained_dir
    from stargan_v2.multidata import load_joint, joint_row, COLOURS
    dest = trained_dir('stargan_v1_mask'); dest.mkdir(parents=True, exist_ok=True)
    f = latest_checkpoint(out/'jnt', 'nets')
    atomic_save({'generator': {k: v.half() for k, v in safe_load(f)['generator'].items()}}, dest/'nets.ckpt')
    (dest/'config.json').write_text((out/'jnt'/'config.json').read_text())
    cfg, G = load_joint(dest)
    val = load_split(shapes_path(), SHAPE_DOMAINS, cfg.img_size, n=2)
    x = torch.cat([val[d] for d in SHAPE_DOMAINS])
    fig = show_grid(joint_row(G, cfg, x), col_titles=['input'] + [f'→{d}' for d in SHAPE_DOMAINS] + [f'→{c}' for c in COLOURS],
                    title='JNT: input | shape targets (form mask [1,0]) | colour targets (colour mask [0,1])', imsize=0.75)
    fig.savefig(dest/'grid.png', dpi=60)
    from PIL import Image   # a palette PNG: a few tens of kB in the repo
    Image.open(dest/'grid.png').convert('RGB').quantize(128).save(dest/'grid.png', optimize=True)
    (dest/'results.json').write_text(json.dumps(res | dict(command=cmd, commit=_commit(), created=time.strftime('%Y-%m-%d')), indent=1))
    print(f"saved {sorted(p.name for p in dest.iterdir())} to {dest}", flush=True)

def _commit():
    try: return subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True, check=True).stdout.strip()
    except Exception: return None

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default='runs/mask', help='folder of the two runs (default runs/mask)')
    p.add_argument('--run', default='both', choices=['jnt', 'sng', 'both', 'none'], help='which models to train (then score both)')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--iters', type=int, default=None, help='total iterations of both runs (default: the preset; lr decays over the last half)')
    p.add_argument('--set', nargs='*', default=[], metavar='KEY=VALUE', help='override MaskConfig.shapes() fields (both runs)')
    p.add_argument('--n-per-domain', type=int, default=100, help='validation sources per shape for the scores (default: all 100)')
    p.add_argument('--no-score', action='store_true', help='train only')
    p.add_argument('--save', action='store_true', help='write the committed files of lesson 12b to stargan_v2/trained/stargan_v1_mask/')
    a = p.parse_args(argv)
    import torch
    torch.set_num_threads(a.threads)
    from stargan_v2.learner import _coerce
    from stargan_v2.multidata import MaskConfig, mask_experiments
    base = MaskConfig.shapes()
    kw = dict(_coerce(base, kv) for kv in a.set)
    if a.iters is not None: kw |= dict(total_iters=a.iters, decay_iters=a.iters // 2) | {k: v for k, v in kw.items() if k == 'decay_iters'}
    base = base.replace(**kw)
    out = Path(a.out)
    print(f"config: {base}\nthreads: {torch.get_num_threads()}, cpus: {os.cpu_count()}", flush=True)
    for name, ds in (('jnt', 'form+colour'), ('sng', 'colour')):
        if a.run in (name, 'both'): _train(name, base.replace(datasets=ds), out/name, a.threads)
    if a.no_score: return 0
    c0 = time.process_time()
    res = mask_experiments(out/'jnt', out/'sng', n_per_domain=a.n_per_domain)
    res['score_cpu_seconds'] = round(time.process_time() - c0, 1)
    res['train_cpu_seconds'] = {n: json.loads((out/n/'train_time.json').read_text()) if (out/n/'train_time.json').exists() else None for n in ('jnt', 'sng')}
    res['config'] = {k: v for k, v in asdict(base).items() if k != 'datasets'}
    (out/'results.json').write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1), flush=True)
    if a.save: _save(out, res, 'python benchmarks/train_mask.py ' + ' '.join(argv if argv is not None else sys.argv[1:]))
    return 0

if __name__ == '__main__': sys.exit(main())
