"""Issue #19 probes: can StarGAN v2's networks at the `shapes32` widths carry a reference's *pattern* at all?

Usage:
  python benchmarks/pattern_probes.py supervised [--steps 4000] [--texture 0] [--fourier] [--threads 1]
  python benchmarks/pattern_probes.py texture-cycle [--texture 10] [--threads 1] [--out DIR]

`supervised` is an upper bound on what the GAN could learn: G and E of `Config.shapes32()` trained with the right answer,
pixel for pixel. Each example is a source and a reference of the same domain from the Shapes renderer, and the target is
the source's content (shape, position, size, rotation, background) drawn with the reference's style (fill colour, pattern,
its tone, angle, period and phase), so G(x_src, E(x_ref)) is asked for one exact image; loss L1 (+ `--texture` × the
phase-blind texture term below). Every 500 steps it prints the L1 on 120 held-out pairs and the share of outputs whose
pattern the project's ruler (`measure_shapes`) reads as the reference's (the GAN preset's "pattern agreement"; chance
about 0.25). `--fourier` adds a fixed bank of sinusoids (8 orientations × 3 periods × sin/cos) to an extra full-resolution
AdaIN block before G's output: a way for G to draw a periodic pattern on a flat fill, which its convolutions alone
cannot place (the pattern's phase is absolute in the frame).

`texture-cycle` trains the `shapes32` preset with one term added to G's objective (not in the paper): the L1 between
phase-blind texture maps of x and its cycle reconstruction G(G(x, s̃), E(x)). The texture map is the local energy of a
fixed Gabor bank (4 orientations × 3 wavelengths 2.8/4/5.7 px, even and odd), averaged over 4 × 4 cells. The cycle's
own L1 cannot ask for a pattern whose phase the fake does not carry (a wrong-phase pattern costs as much as none); this
term can. Then prints every Shapes score, as `train_shapes.py` does.
"""
import argparse, math, os, sys, time, types
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F

def gabor_bank(wavelengths=(2.83, 4., 5.66), n_orient=4) -> tuple:
    "(2·len(wavelengths)·n_orient, 1, k, k) zero-mean even and odd Gabor filters (about unit gain at their frequency), and the pad."
    ks = []
    for lam in wavelengths:
        sig = 0.56 * lam; r = int(math.ceil(2.5 * sig))
        y, x = torch.meshgrid(torch.arange(-r, r + 1.), torch.arange(-r, r + 1.), indexing='ij')
        g = torch.exp(-(x**2 + y**2) / (2 * sig**2))
        for k in range(n_orient):
            u = x * math.cos(math.pi * k / n_orient) + y * math.sin(math.pi * k / n_orient)
            ev, od = g * torch.cos(2 * math.pi * u / lam), g * torch.sin(2 * math.pi * u / lam)
            ev = ev - g * ev.sum() / g.sum()   # zero mean: a flat fill gives no energy
            n = (ev.abs().sum() + od.abs().sum()) / math.pi
            ks.append((ev / n, od / n, r))
    R = max(r for *_, r in ks)
    W = torch.zeros(2 * len(ks), 1, 2 * R + 1, 2 * R + 1)
    for i, (e, o, r) in enumerate(ks):
        W[2 * i, 0, R - r:R + r + 1, R - r:R + r + 1], W[2 * i + 1, 0, R - r:R + r + 1, R - r:R + r + 1] = e, o
    return W, R

_BANK = gabor_bank()
def texture_map(x, pool:int=4):
    "Phase-blind texture of (B,3,H,W) images: Gabor energy of the grey image, averaged over pool × pool cells."
    W, R = _BANK
    r = F.conv2d(F.pad(x.mean(1, keepdim=True), (R,) * 4, mode='replicate'), W.to(x))
    return F.avg_pool2d((r[:, 0::2]**2 + r[:, 1::2]**2 + 1e-6).sqrt(), pool)

def texture_loss(a, b): return (texture_map(a) - texture_map(b)).abs().mean()

def add_fourier_stage(G, img_size:int, style_dim:int, n_orient:int=8):
    "Give G an extra full-resolution AdaIN block whose input also holds fixed sinusoids (periods of the Shapes patterns)."
    from stargan_v2.layers import AdainResBlk
    c = torch.arange(img_size) + 0.5
    y, x = torch.meshgrid(c, c, indexing='ij')
    ch = []
    for per in [img_size * p / 64 for p in (8, 9.5, 11)]:
        for k in range(n_orient):
            u = 2 * math.pi * (x * math.cos(math.pi * k / n_orient) + y * math.sin(math.pi * k / n_orient)) / per
            ch += [torch.sin(u), torch.cos(u)]
    G.register_buffer('pe', torch.stack(ch)[None])
    G.tex = AdainResBlk(G.to_rgb[0].num_features + len(ch), G.to_rgb[0].num_features, style_dim)
    def forward(self, x, s, masks=None):
        x = self.from_rgb(x)
        for b in self.encode: x = b(x)
        for b in self.decode: x = b(x, s)
        return self.to_rgb(self.tex(torch.cat([x, self.pe.expand(len(x), -1, -1, -1)], 1), s))
    G.forward = types.MethodType(forward, G)

STYLE = ('fill_hue', 'fill_sat', 'fill_val', 'pattern', 'pattern_tone', 'pattern_amount', 'pattern_angle', 'pattern_period', 'pattern_phase')

def supervised(a):
    from stargan_v2.core import Config
    from stargan_v2.models import build_nets
    from stargan_v2.shapes import sample_shape_params, render_shape, measure_shapes, SHAPE_DOMAINS, PATTERNS
    torch.manual_seed(0); rng = np.random.default_rng(0)
    cfg = Config.shapes32(); S = cfg.img_size
    nets = build_nets(cfg); E, G = nets.style_encoder, nets.generator
    if a.fourier: add_fourier_stage(G, S, cfg.style_dim)
    opt = torch.optim.Adam(list(E.parameters()) + list(G.parameters()), cfg.lr, betas=(cfg.beta1, cfg.beta2))
    im = lambda p: torch.as_tensor(render_shape(p, S), dtype=torch.float32).permute(2, 0, 1) / 127.5 - 1
    def batch(n):
        xs, rs, ts, ds, ps = [], [], [], [], []
        for _ in range(n):
            d = int(rng.integers(len(SHAPE_DOMAINS))); p, q = (sample_shape_params(rng, SHAPE_DOMAINS[d]) for _ in range(2))
            xs.append(im(p)); rs.append(im(q)); ts.append(im(p | {k: q[k] for k in STYLE})); ds.append(d); ps.append(q['pattern'])
        return torch.stack(xs), torch.stack(rs), torch.stack(ts), torch.tensor(ds), ps
    xv, rv, tv, dv, pv = batch(120)
    print(f"supervised upper bound: G+E of shapes32 ({sum(p.numel() for p in G.parameters()):,} + {sum(p.numel() for p in E.parameters()):,} "
          f"parameters), batch {cfg.batch_size}, lr {cfg.lr}, texture {a.texture}, fourier {a.fourier}; held-out references' patterns "
          f"{ {k: pv.count(k) for k in PATTERNS} }", flush=True)
    t0, c0, best = time.time(), time.process_time(), 0.
    for step in range(1, a.steps + 1):
        x, r, t, d, _ = batch(cfg.batch_size)
        out = G(x, E(r, d))
        loss = (out - t).abs().mean() + (a.texture * texture_loss(out, t) if a.texture else 0)
        opt.zero_grad(); loss.backward(); opt.step()
        if step % 500 == 0:
            with torch.no_grad(): o = G(xv, E(rv, dv))
            pats = list(measure_shapes(o)['pattern'])
            agree = float(np.mean([p == q for p, q in zip(pats, pv)])); best = max(best, agree)
            print(f"step {step:5d}  held-out L1 {(o - tv).abs().mean().item():.4f}  pattern agreement {agree:.3f}  outputs read as "
                  f"{ {k: pats.count(k) for k in PATTERNS} }  {time.process_time() - c0:.0f} CPU-s", flush=True)
    print(f"best pattern agreement {best:.3f} (target of the GAN preset: 0.80; chance about 0.25)")

def texture_cycle(a):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import stargan_v2.losses as L, stargan_v2.trainer as T, train_shapes
    def g_loss(nets, cfg, x_real, y_org, y_trg, z_trgs=None, x_refs=None, masks=None, lambda_ds=None):
        "`stargan_v2.losses.g_loss` plus texture × texture_loss(x_rec, x_real)."
        lambda_ds = cfg.lambda_ds if lambda_ds is None else lambda_ds
        k1, (za, zb) = ('z', z_trgs) if z_trgs is not None else ('x_ref', x_refs)
        s_trg = nets.style(y_trg, **{k1: za})
        x_fake = nets.generator(x_real, s_trg, masks=masks)
        loss_adv = L.adv_loss(nets.discriminator(x_fake, y_trg), 1)
        loss_sty = L.style_recon_loss(nets.style_encoder(x_fake, y_trg), s_trg)
        with torch.no_grad(): x_fake2 = nets.generator(x_real, nets.style(y_trg, **{k1: zb}), masks=masks)
        loss_ds = L.diversity_loss(x_fake, x_fake2)
        x_rec = nets.generator(x_fake, nets.style_encoder(x_real, y_org), masks=nets.masks(x_fake))
        loss_cyc, loss_tex = L.cycle_loss(x_rec, x_real), texture_loss(x_rec, x_real)
        loss = loss_adv + cfg.lambda_sty * loss_sty - lambda_ds * loss_ds + cfg.lambda_cyc * loss_cyc + a.texture * loss_tex
        return loss, dict(adv=loss_adv.item(), sty=loss_sty.item(), ds=loss_ds.item(), cyc=loss_cyc.item(), tex=loss_tex.item())
    T.g_loss = g_loss   # the trainer's G step calls this one
    train_shapes.main(['--preset', 'shapes32', '--threads', str(a.threads)] + (['--out', a.out] if a.out else []))

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('probe', choices=['supervised', 'texture-cycle'])
    p.add_argument('--steps', type=int, default=4000, help='supervised: training steps (default 4000)')
    p.add_argument('--texture', type=float, default=None, help='weight of the texture term (default: 0 supervised, 10 texture-cycle)')
    p.add_argument('--fourier', action='store_true', help='supervised: add the fixed-sinusoid AdaIN stage to G')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--out', default=None, help='texture-cycle: run folder')
    a = p.parse_args(argv)
    if a.texture is None: a.texture = 0. if a.probe == 'supervised' else 10.
    torch.set_num_threads(a.threads)
    supervised(a) if a.probe == 'supervised' else texture_cycle(a)

if __name__ == '__main__': main()
