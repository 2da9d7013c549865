"""Issue #14 probes: why DiscoGAN's Shapes preset stops near 0.85 target-domain accuracy, and what moves it.

Usage:
  python benchmarks/disco_probes.py round-trip [RUN [ARCH FLAGS]] [--n 100]
  python benchmarks/disco_probes.py arch [--g preset|full] [--g-width 32] [--g-layers 3] [--g-up] [--d-full]
                                         [--decay-start N] [--ema BETA ...] [--set KEY=VALUE ...] [--out DIR] [--n 100]

`round-trip` asks whether the reconstruction loss is what keeps G from drawing squares: a circle has no orientation, so
on the way square -> circle -> square G_square->circle would have to hide each square's angle in the circle it draws
(cycle-consistent models' "steganography"). For the committed model (or RUN) and each task into a shape with an
orientation, it prints how often the ruler (`measure_shapes`) reads the target shape in translations of real sources,
and in the round trip of real targets (B -> A -> B, which carries whatever G_B->A hid), with the round trip's mean L1.

`arch` trains `DiscoConfig.shapes()` (all three pairs, one thread, as `benchmarks/train_discogan.py`) with architecture
changes that are not config fields, all not official. Since 3 Dec the preset itself has the full-resolution G and an EMA
of the G's (β 0.995); `--set g_full=0 g_min_size=8 g_mid=2 ema_beta=0 total_iters=4000` gives the preset these probes
started from. The scores at the checkpoints and of the "raw" G are always those of the trained G's (`*_nets.ckpt`).
  --g full       G without any down- or upsampling, like StarGAN v1's Shapes G: a 3x3 conv to `--g-width` channels
                 (LReLU), `--g-layers` 3x3 BN+ReLU convs at full resolution, a 3x3 conv to RGB and a Sigmoid (now also
                 the config field `g_full`, at G width `dim`);
  --g-up         (preset G) the last 4x4 transposed conv replaced by nearest x2 and two 3x3 convs (16 channels, BN);
  --d-full       each D gets a stride-1 3x3 conv (16 channels) at full resolution before its first stride-2 conv;
  --decay-start  the lr of G and D falls linearly from `lr` at that iteration to 0 at `total_iters` (DiscoGAN keeps it
                 constant), by a wrapper around `disco_iteration`.
  --ema B [B..]  also keep an EMA copy of every G per β (weights and BN running statistics, updated after every
                 iteration, as StarGAN v2 does for its G; DiscoGAN has none) and score it beside the raw G;
  --recal        with --ema: also score each EMA after recomputing its BN statistics on 512 training images per domain.
It prints the CPU time of training, the mean target-domain accuracy and position error at every checkpoint (50
sources per domain; `--set save_every=N` picks the checkpoints; with `--ema`, each EMA's too), then on `--n` sources
per domain the accuracy per task of the trained G and of each EMA, and every Shapes score of the last of them.
"""
import argparse, contextlib, copy, json, os, tempfile, time
from pathlib import Path
import torch
from torch import nn
from fastai.callback.core import Callback

def FullResGenerator(width:int=32, layers:int=3) -> nn.Module:
    "A DiscoGAN-style G (BN, ReLU, Sigmoid, no biases) that never leaves full resolution: the library's `DiscoGenerator(full=...)`, at any width."
    from stargan_v2.discogan import DiscoGenerator
    return DiscoGenerator(16, width, full=layers)

def _up_output(G:nn.Module):
    "Replace G's last 4x4 transposed conv (+ Sigmoid) with nearest x2 and two 3x3 convs."
    ni = G.decoder[-1][0].in_channels
    G.decoder[-1] = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(ni, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU(), nn.Conv2d(16, 3, 3, 1, 1, bias=False), nn.Sigmoid())

def _full_res_d(D:nn.Module):
    "Put a stride-1 3x3 conv (16 channels, LReLU) in front of D's first stride-2 conv."
    c = D.blocks[0][0]
    D.blocks[0] = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.LeakyReLU(0.2),
                                nn.Conv2d(16, c.out_channels, 4, 2, 1, bias=False), nn.LeakyReLU(0.2))

@contextlib.contextmanager
def probe_nets(a):
    "Inside the block, `stargan_v2.discogan` builds (for training and loading) the nets `a` asks for."
    import stargan_v2.discogan as dg
    orig = dg.DiscoNets
    def nets(cfg):
        n = orig(cfg)
        for pa, pb in n.pairs:
            p = n.pair(pa, pb)
            for g in ('G_AB', 'G_BA'):
                if a.g == 'full': setattr(p, g, FullResGenerator(a.g_width, a.g_layers))
                elif a.g_up: _up_output(getattr(p, g))
            if a.d_full: _full_res_d(p.D_A); _full_res_d(p.D_B)
        return n
    dg.DiscoNets = nets
    try: yield
    finally: dg.DiscoNets = orig

@contextlib.contextmanager
def lr_decay(start:int|None):
    "Inside the block, every DiscoGAN iteration sets the lr of both Adams to lr * (1 - (it - start) / (total - start)) past `start`."
    import stargan_v2.discogan as dg
    orig = dg.disco_iteration
    def it_with_decay(nets, optims, cfg, xs, it, on_loss=None):
        f = 1. if it < start else max(0., 1 - (it - start) / max(cfg.total_iters - start, 1))
        for o in optims.values():
            for g in o.param_groups: g['lr'] = cfg.lr * f
        return orig(nets, optims, cfg, xs, it, on_loss)
    if start is not None: dg.disco_iteration = it_with_decay
    try: yield
    finally: dg.disco_iteration = orig

class GEma(Callback):
    "EMA copies of every G of a DiscoGAN learner, one per beta, by the library's `DiscoNets.ema_copy` / `ema_update` (weights and BN running statistics), snapshotted every `every` iterations."
    order = 10
    def __init__(self, betas, every:int): self.betas, self.every, self.snaps, self.ema = list(betas), every, {}, {}
    def before_fit(self): self.ema = {b: self.learn.model.ema_copy() for b in self.betas}
    def after_batch(self):
        for b, m in self.ema.items(): self.learn.model.ema_update(m, b)
        if self.learn.train_iter % self.every == 0:   # train_iter already counts this batch
            self.snaps[self.learn.train_iter] = {b: copy.deepcopy(m.state_dict()) for b, m in self.ema.items()}

def recalibrate_bn(nets, cfg, n:int=512):
    "Recompute every G's BN running statistics from `n` training images of its source domain (in batches of cfg.batch_size, equal weights)."
    from stargan_v2.evaluate import load_split
    from stargan_v2.data import domain_names
    from stargan_v2.shapes import shapes_path
    root = shapes_path(); doms = domain_names(root, 'train')
    xs = load_split(root, doms, cfg.img_size, split='train', n=n)
    for a, b in nets.pairs:
        p = nets.pair(a, b)
        for G, src in ((p.G_AB, doms[a]), (p.G_BA, doms[b])):
            bns = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
            for m in bns: m.reset_running_stats(); m.momentum = None   # cumulative average over the batches below
            G.train()
            with torch.no_grad():
                for x in xs[src].split(cfg.batch_size): G((x + 1) / 2)
            for m in bns: m.momentum = 0.1
            G.eval()
    return nets

def round_trip(a):
    from stargan_v2.discogan import load_translator, disco_trained_dir, round_trips
    with probe_nets(a): cfg, tr = load_translator(a.run or disco_trained_dir(), device='cpu')
    df = round_trips(tr, cfg.img_size, n_per_domain=a.n)
    print(f"{a.run or 'committed model'}: {a.n} validation images per domain; share the ruler reads as the target shape")
    print(f"{'task':<20} {'real sources':>12} {'round trip of real targets':>27} {'round-trip L1 (0-1)':>20}")
    for task, r in df.iterrows():
        print(f"{task.replace('→', '->'):<20} {r['from real sources']:>12.2f} {r['round trip of real targets']:>27.2f} {r['round trip L1 (0-1 range)']:>20.3f}")

def arch(a):
    import stargan_v2.discogan as dg
    from stargan_v2.evaluate import shapes_scores
    cfg = dg.DiscoConfig.shapes()
    cfg = cfg.replace(**dict(dg._coerce(cfg, kv) for kv in a.set))
    out = Path(a.out or tempfile.mkdtemp(prefix='disco_probe_'))
    print(f"probe: g={a.g} g_width={a.g_width} g_layers={a.g_layers} g_up={a.g_up} d_full={a.d_full} decay_start={a.decay_start}\n"
          f"config: {cfg}\nout: {out}", flush=True)
    ema = GEma(a.ema, cfg.save_every) if a.ema else None
    with probe_nets(a), lr_decay(a.decay_start):
        c0 = time.process_time()
        learn = dg.train_disco(cfg, out, device='cpu', verbose=True, progress=False, cbs=[ema] if ema else None)
        cpu = time.process_time() - c0
        g = learn.model.pair(*learn.model.pairs[0]).G_AB
        print(f"trained {cfg.total_iters} iterations in {cpu:.1f} CPU-s ({cpu / cfg.total_iters:.4f} s/it); "
              f"{sum(p.numel() for p in g.parameters()):,} parameters per G", flush=True)
        for f in sorted((out/'checkpoints').glob('*_nets.ckpt')):
            c, tr = dg.load_translator(f, device='cpu')
            sc = shapes_scores(tr, c, n_per_domain=50, num_outs=1)
            row = dict(iteration=int(f.name[:6]), acc=round(sc['acc_latent'], 3), pos_err=round(sc['pos_err_latent'], 2))
            for b, sd in (ema.snaps.get(row['iteration'], {}) if ema else {}).items():
                m = learn.model.ema_copy(); m.load_state_dict(sd)
                for tag, mm in [('', m)] + ([('+recal', recalibrate_bn(copy.deepcopy(m), cfg))] if a.recal else []):
                    se = shapes_scores(dg.DiscoTranslator(mm, cfg, learn.dls.domains), cfg, n_per_domain=50, num_outs=1)
                    row[f'ema{b}{tag}'] = (round(se['acc_latent'], 3), round(se['pos_err_latent'], 2))
            print(json.dumps(row), flush=True)
        final = [('raw', learn.model)] + ([(f'ema{b}', m) for b, m in ema.ema.items()] if ema else [])
        if ema and a.recal: final += [(f'ema{b}+recal', recalibrate_bn(copy.deepcopy(m), cfg)) for b, m in ema.ema.items()]
        for name, m in final[:-1]:
            sc = shapes_scores(dg.DiscoTranslator(m, cfg, learn.dls.domains), cfg, n_per_domain=a.n, num_outs=1)
            print(json.dumps(dict(which=name, acc=round(sc['acc_latent'], 4), pos_err=round(sc['pos_err_latent'], 2),
                                  tasks={t: round(r['acc_latent'], 3) for t, r in sc['tasks'].items()})), flush=True)
        print(f"every Shapes score of {final[-1][0]}:", flush=True)
        sc = shapes_scores(dg.DiscoTranslator(final[-1][1], cfg, learn.dls.domains), cfg, n_per_domain=a.n, num_outs=1)
    print(json.dumps(dict(train_cpu_seconds=round(cpu, 1), **{k: round(v, 4) for k, v in sc.items() if isinstance(v, float)},
                          tasks={t: round(r['acc_latent'], 3) for t, r in sc['tasks'].items()}), indent=1), flush=True)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    nets = argparse.ArgumentParser(add_help=False)   # the architecture flags: what `arch` trains and `round-trip` loads
    nets.add_argument('--g', choices=('preset', 'full'), default='preset', help="'full': G without down/upsampling")
    nets.add_argument('--g-width', type=int, default=32); nets.add_argument('--g-layers', type=int, default=3)
    nets.add_argument('--g-up', action='store_true', help="preset G's last layer: nearest x2 + two 3x3 convs")
    nets.add_argument('--d-full', action='store_true', help='a stride-1 3x3 conv at full resolution in front of each D')
    r = sub.add_parser('round-trip', parents=[nets], help='is the round trip hiding the rotation?')
    r.add_argument('run', nargs='?', default=None, help='a DiscoGAN run folder or checkpoint (default: the committed model; '
                   'a run of `arch` needs its architecture flags)')
    r.add_argument('--n', type=int, default=100, help='validation images per domain')
    q = sub.add_parser('arch', parents=[nets], help='train the shapes preset with an architecture change')
    q.add_argument('--decay-start', type=int, default=None, help='linear lr decay to 0 from this iteration')
    q.add_argument('--ema', type=float, nargs='*', default=[], metavar='BETA', help='also keep and score EMA copies of every G (not in DiscoGAN)')
    q.add_argument('--recal', action='store_true', help="with --ema: also score each EMA with its G's BN statistics recomputed on 512 training images")
    q.add_argument('--set', nargs='*', default=[], metavar='KEY=VALUE', help='override DiscoConfig.shapes() fields')
    q.add_argument('--out', default=None); q.add_argument('--n', type=int, default=100, help='val sources per domain for the last scores')
    q.add_argument('--threads', type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(getattr(a, 'threads', 1))
    round_trip(a) if a.cmd == 'round-trip' else arch(a)

if __name__ == '__main__': main()
