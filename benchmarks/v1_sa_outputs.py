"""Write the small committed outputs of lesson 12a from a finished `shapes_sa` run (made by `benchmarks/train_v1.py --preset shapes_sa`).

Usage:  python benchmarks/v1_sa_outputs.py RUN_DIR [--dest stargan_v2/trained/stargan_v1_sa_shapes] [--command "..."]

Writes to DEST (no weights: the lesson shows these files):
- scores.json   RUN_DIR/metrics.json (time, CPU time, every Shapes score) + config, command, commit, date
- gamma.csv     γ of G's and D's attention block and the loss terms, every 20 iterations (from the last checkpoint's log)
- attention.png for val triangles translated to squares: each corner of the triangle as a query at G's attention block
- samples.png   the run's last sample grid (sources on top, one row per target domain)
"""
import argparse, json, shutil, subprocess, sys, time
from pathlib import Path

def _commit():
    try: return subprocess.run(['git', 'rev-parse', 'HEAD'], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip()
    except OSError: return None

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('run')
    p.add_argument('--dest', default=str(Path(__file__).parents[1]/'stargan_v2'/'trained'/'stargan_v1_sa_shapes'))
    p.add_argument('--command', default='python benchmarks/train_v1.py --preset shapes_sa --out RUN', help='the command that trained RUN')
    a = p.parse_args(argv)
    import pandas as pd
    from stargan_v2.v1 import load_translator
    from stargan_v2.checkpoints import safe_load, latest_checkpoint
    run, dest = Path(a.run), Path(a.dest); dest.mkdir(parents=True, exist_ok=True)
    cfg, tr = load_translator(run)
    f = latest_checkpoint(run, 'state'); it = int(f.name.split('_')[0])
    hist = safe_load(f)['callbacks']['loss_log']
    df = pd.DataFrame({k: v.tolist() for k, v in hist.items() if not k.startswith('_')})
    df['iter'] = df['iter'].astype(int); df = df[df['iter'] % 20 == 0]
    df.rename(columns={'SA/gamma_generator': 'gamma_G', 'SA/gamma_discriminator': 'gamma_D'}).round(5).to_csv(dest/'gamma.csv', index=False)
    m = json.loads((run/'metrics.json').read_text())
    m |= dict(command=a.command, outputs_command='python benchmarks/v1_sa_outputs.py ' + ' '.join(argv if argv is not None else sys.argv[1:]),
              commit=_commit(), created=time.strftime('%Y-%m-%d'), iterations=it, config=json.loads((run/'config.json').read_text()))
    (dest/'scores.json').write_text(json.dumps(m, indent=1))
    import matplotlib.pyplot as plt
    from stargan_v2.attention import shapes_attention_figure
    fig = shapes_attention_figure(tr.generator, cfg.img_size); fig.savefig(dest/'attention.png', dpi=72); plt.close(fig)
    grids = sorted((run/'samples').glob(f'{it:06d}_*.png'))
    if grids: shutil.copy(grids[0], dest/'samples.png')
    for q in sorted(dest.iterdir()): print(q, q.stat().st_size)
    return 0

if __name__ == '__main__': sys.exit(main())
