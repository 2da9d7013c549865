"""Regenerate the trained models committed with the library (`stargan_v2/trained/<name>/`) from nothing.

    python benchmarks/lessons_models.py            # every committed model (the Shapes preset: about 10 min on one CPU thread)
    python benchmarks/lessons_models.py shapes

Each model is trained with the exact recipe of `stargan_v2.trained.make_trained`, exported in fp16 with its config,
losses, sample grids and a manifest (command, commit, seed, training time, SHA-256 of every file, Shapes scores of the
stored weights on all validation sources, and a small check that `tests/test_trained.py` recomputes). Prints the scores
next to the ones previously committed, so a regeneration shows whether it reproduces them.
"""
import argparse, json, sys
import torch
from stargan_v2.trained import make_trained, trained_names, trained_manifest

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument('names', nargs='*', help='models to regenerate (default: all committed ones)')
p.add_argument('--threads', type=int, default=1)
a = p.parse_args()
for name in a.names or trained_names() or ['shapes']:
    old = trained_manifest(name)['scores'] if name in trained_names() else None
    m = json.loads(make_trained(name, a.threads).read_text())
    print(f"{name}: {m['iterations']} iterations in {m['train_seconds']} s, commit {m['commit']}")
    keys = ('acc_latent', 'acc_reference', 'pos_err_latent', 'pos_err_reference', 'hue_err_reference', 'hue_err_source_reference', 'diversity_latent', 'shapes_fid_latent')
    print(f"{'score':28s} {'new':>9s} {'committed before':>17s}")
    for k in keys: print(f"{k:28s} {m['scores'][k]:9.3f} {'' if old is None else format(old[k], '17.3f')}")
