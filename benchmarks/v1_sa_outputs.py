"""Write the small committed outputs of lesson 12a from a finished `shapes_sa` run (made by `benchmarks/train_v1.py --preset shapes_sa`).

Usage:  python benchmarks/v1_sa_outputs.py RUN_DIR [--dest stargan_v2/trained/stargan_v1_sa_shapes] [--command "..."] [--scores-only FILE]

Writes to DEST (no weights: the lesson shows these files):
- scores.json   RUN_DIR/metrics.json (time, CPU time, every Shapes score) + config, command, commit, date, and `attention`:
                how G's β looks for the corners of 50 val triangles translated to squares (`attention_stats`)
- gamma.csv     γ of G's and D's attention block and the loss terms, every 20 iterations (from the last checkpoint's log)
- attention.png for val triangles translated to squares: each corner of the triangle as a query at G's attention block
- samples.png   the run's last sample grid (sources on top, one row per target domain)
With `--scores-only FILE` (an ablation run, e.g. the plain preset with SA blocks) only DEST/FILE is written: the same
content as scores.json.
"""
import argparse, json, shutil, subprocess, sys, time
from pathlib import Path

def _commit():
    try: return subprocess.run(['git', 'rev-parse', 'HEAD'], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip()
    except OSError: return None

def attention_stats(G, img_size, n=50, target='square'):
    "For `n` val triangles → `target`: β mass on the triangle's pixels vs its area, TV distance between the corners' rows, entropy/log N."
    import numpy as np, pandas as pd, torch, torch.nn.functional as F
    from matplotlib.path import Path as Polygon
    from stargan_v2.attention import attention_maps, triangle_corner_queries
    from stargan_v2.shapes import shapes_path, shape_vertices
    from stargan_v2.data import domain_names
    from stargan_v2.metrics import load_images
    root = shapes_path(); meta = pd.read_csv(root/'metadata.csv')
    rows = meta[(meta.split == 'val') & (meta.domain == 'triangle')].sort_values('path').head(n)
    x = load_images([root/p for p in rows.path], img_size).float() / 127.5 - 1
    c = F.one_hot(torch.full((len(rows),), domain_names(root).index(target)), 3).float()
    (a,) = attention_maps(G.eval(), x, c)
    h = w = int(round(a.shape[-1] ** 0.5))
    yy, xx = np.mgrid[0:h, 0:w]; centres = np.stack([(xx.ravel() + .5) * 64 / w, (yy.ravel() + .5) * 64 / h], 1)  # 64-px frame
    on, area, tv, ent = [], [], [], []
    for k, (_, r) in enumerate(rows.iterrows()):
        inside = Polygon(np.array(shape_vertices('triangle', r['cx'], r['cy'], r['size'], r['rotation']))).contains_points(centres)
        rws = [a[k, i * w + j].double().numpy() for i, j in triangle_corner_queries(r, (h, w))]
        on += [q[inside].sum() for q in rws]; area.append(inside.mean())
        tv += [0.5 * np.abs(rws[i] - rws[j]).sum() for i in range(3) for j in range(i + 1, 3)]
        ent += [-(q * np.log(q + 1e-12)).sum() / np.log(h * w) for q in rws]
    return dict(n_triangles=len(rows), map=f'{h}x{w}', mass_on_triangle=round(float(np.mean(on)), 4), triangle_area=round(float(np.mean(area)), 4),
                tv_between_corners=round(float(np.mean(tv)), 4), entropy_over_log_n=round(float(np.mean(ent)), 4))

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('run')
    p.add_argument('--dest', default=str(Path(__file__).parents[1]/'stargan_v2'/'trained'/'stargan_v1_sa_shapes'))
    p.add_argument('--command', default='python benchmarks/train_v1.py --preset shapes_sa --out RUN', help='the command that trained RUN')
    p.add_argument('--scores-only', metavar='FILE', help='write only DEST/FILE (scores + provenance), e.g. for an ablation run')
    a = p.parse_args(argv)
    import pandas as pd
    from stargan_v2.v1 import load_translator
    from stargan_v2.checkpoints import safe_load, latest_checkpoint
    run, dest = Path(a.run), Path(a.dest); dest.mkdir(parents=True, exist_ok=True)
    f = latest_checkpoint(run, 'state'); it = int(f.name.split('_')[0])
    m = json.loads((run/'metrics.json').read_text())
    m |= dict(command=a.command, outputs_command='python benchmarks/v1_sa_outputs.py ' + ' '.join(argv if argv is not None else sys.argv[1:]),
              commit=_commit(), created=time.strftime('%Y-%m-%d'), iterations=it, config=json.loads((run/'config.json').read_text()))
    if a.scores_only:
        (dest/a.scores_only).write_text(json.dumps(m, indent=1)); print(dest/a.scores_only); return 0
    cfg, tr = load_translator(run)
    hist = safe_load(f)['callbacks']['loss_log']
    df = pd.DataFrame({k: v.tolist() for k, v in hist.items() if not k.startswith('_')})
    df['iter'] = df['iter'].astype(int); df = df[df['iter'] % 20 == 0]
    df.rename(columns={'SA/gamma_generator': 'gamma_G', 'SA/gamma_discriminator': 'gamma_D'}).round(5).to_csv(dest/'gamma.csv', index=False)
    m['attention'] = attention_stats(tr.generator, cfg.img_size)
    (dest/'scores.json').write_text(json.dumps(m, indent=1))
    import matplotlib.pyplot as plt
    from stargan_v2.attention import shapes_attention_figure
    fig = shapes_attention_figure(tr.generator, cfg.img_size); fig.savefig(dest/'attention.png', dpi=72); plt.close(fig)
    grids = sorted((run/'samples').glob(f'{it:06d}_*.png'))
    if grids: shutil.copy(grids[0], dest/'samples.png')
    for q in sorted(dest.iterdir()): print(q, q.stat().st_size)
    return 0

if __name__ == '__main__': sys.exit(main())
