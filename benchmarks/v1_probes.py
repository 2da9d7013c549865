"""Issue #13 probes: why StarGAN v1's Shapes preset stops short of 90 % target-domain accuracy, and the fixes tried.

Usage:
  python benchmarks/v1_probes.py fooled RUN [--iter N]                 # is D's classifier fooled by G's failed translations?
  python benchmarks/v1_probes.py fake-class [--lambda-fake 1] [--g-k-only] [--lambda-id 0] [--g-skip] [--g-mask [OFFSET]]
                                           [--mask-price W] [--set KEY=VALUE ...] [--out DIR]
  python benchmarks/v1_probes.py domain-critic [--set KEY=VALUE ...] [--out DIR]

`fooled` loads a v1 run's checkpoint (G, its EMA and D), translates the 100 val sources of every domain into every other
and prints, per task, for the EMA G and the raw G: the ruler's target-domain accuracy (`measure_shapes`), the share
that D's classification head puts in the target domain, that share among the translations the ruler rejects, what
the ruler reads those as, and D's accuracy on the real sources.

`fake-class` trains the `shapes` preset (as `benchmarks/train_v1.py`, then prints every Shapes score) with D's
"fake" class at weight `--lambda-fake` (`V1Config.lambda_fake`, not in StarGAN v1; the preset has 1 since 3 Dec, 0 is
v1's classifier): D's classification head gets a (K+1)-th class and learns to put G's fakes in it (the K+1 classifier
of semi-supervised GANs, Salimans et al. 2016). G's classification term is then a softmax over K+1 logits, so a fake must
look like a *real* member of its target domain, not merely land on the right side of a boundary drawn between real
images only. Add `--set lambda_rec=1` for the earlier preset's reconstruction weight. `--g-k-only`: G's term reads only the K domain logits;
`--lambda-id W`: G also pays W·|G(x, c_org) − x|₁ (CycleGAN's identity term, for the colour). `--g-skip`: G predicts a
change of its tanh's input, G(x, c) = tanh(atanh(0.999·x) + h(x, c)), so h = 0 is the identity (a skip from input to
output; v1's G has none): does it keep the source's hue, which the cycle alone leaves to the seed? `--g-mask [OFFSET]` and `--mask-price W`
are the library's copy mask since 3 Dec (`V1Config.g_copy`, `copy_init`, `lambda_copy`; lesson 12, *Keeping the source's
colour*; not in v1): G draws a colour image o and a mask m (a 4th output channel through a sigmoid, its logit offset by
OFFSET: 2, the default, starts m near 0.88, 0 at 0.5) and returns m·x + (1 − m)·o, copying the source where m ≈ 1
(GANimation's attention mask), and pays W times the mean of −log(1 − m) over its translation and reconstruction in each
G step, a price on copying (GANimation's own term, W·mean(m), stops pulling once the sigmoid saturates at m ≈ 1; this
one's gradient with respect to the logit is W·m, strongest there). Without `--g-mask` the probe runs v1's G
(`g_copy=False`), whatever the preset has. The lesson's rows made before the fields existed came from a patch of G in
this script: the same G and price, its first weights drawn in another order.

`domain-critic` trains the earlier preset (`lambda_rec=1 lambda_fake=0`, before 3 Dec) with D's critic map split into one map per domain (StarGAN v2's multi-branch D, not
in v1): real images are judged on their own domain's map, fakes on the target's, the gradient penalty on the map of
whichever end of the interpolation is nearer.
"""
import argparse, json, os, sys, types
import numpy as np, torch, torch.nn.functional as F

def fooled(a):
    from stargan_v2.v1 import V1Config, build_v1
    from stargan_v2.evaluate import load_split
    from stargan_v2.shapes import measure_shapes, shapes_path
    from stargan_v2.data import domain_names
    cfg = V1Config.from_dict(json.load(open(os.path.join(a.run, 'config.json'))))
    ck = os.path.join(a.run, 'checkpoints')
    it = a.iter or max(int(f.split('_')[0]) for f in os.listdir(ck) if f.endswith('_nets.ckpt'))
    nets, ema = build_v1(cfg), build_v1(cfg, with_d=False)
    sd = torch.load(os.path.join(ck, f'{it:06d}_nets.ckpt'), weights_only=True)
    nets.generator.load_state_dict(sd['generator']); nets.discriminator.load_state_dict(sd['discriminator'])
    ema_file = os.path.join(ck, f'{it:06d}_nets_ema.ckpt')
    gens = [('raw G', nets.generator)]
    if os.path.exists(ema_file):
        ema.generator.load_state_dict(torch.load(ema_file, weights_only=True)['generator']); gens.insert(0, ('EMA G', ema.generator))
    root = shapes_path(); doms = domain_names(root, 'val')
    val = load_split(root, doms, cfg.img_size); D = nets.discriminator.eval()
    print(f"{a.run}, iteration {it}, 100 val sources per domain")
    for name, G in gens:
        G.eval(); print(f"== {name}\n{'task':20s} ruler acc  D_cls says target  ... of the ruler's rejects  rejects read as           D_cls acc on real sources")
        for si, s in enumerate(doms):
            for ti, t in enumerate(doms):
                if s == t: continue
                x = val[s]
                with torch.no_grad():
                    f = G(x, F.one_hot(torch.full((len(x),), ti), cfg.num_domains).float())
                    d_fake, d_real = D(f)[1].argmax(1).numpy(), D(x)[1].argmax(1).numpy()
                got = [str(v) for v in measure_shapes(f, doms)['domain']]
                ok_r, ok_d = np.array([g == t for g in got]), d_fake == ti
                rej = ' '.join(f'{k}:{int(v)}' for k, v in zip(*np.unique(np.array(got)[~ok_r], return_counts=True)))
                print(f"{s + '->' + t:20s} {ok_r.mean():9.2f}  {ok_d.mean():17.2f}  {ok_d[~ok_r].mean() if (~ok_r).any() else float('nan'):24.2f}  "
                      f"{rej:24s}  {(d_real == si).mean():.2f}")

def fake_class(a):
    "The preset with `lambda_fake` (the library's fake class, lesson 12) at `--lambda-fake`, plus the probe-only variants."
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import stargan_v2.v1 as V, train_v1
    _g_loss = V.v1_g_loss
    if a.mask_price and a.g_mask is None: raise SystemExit('v1_probes.py: --mask-price needs --g-mask')
    def v1_g_loss(nets, cfg, x_real, y_org, c_org, y_trg, c_trg):   # `stargan_v2.v1.v1_g_loss`, with the probe's variants
        if a.g_k_only:   # G's classification term over the K domain logits only: v1_g_loss sees D without the fake logit
            D = nets.discriminator
            nets = types.SimpleNamespace(generator=nets.generator, discriminator=lambda x: (lambda src, cls: (src, cls[:, :cfg.num_domains]))(*D(x)))
        loss, parts = _g_loss(nets, cfg, x_real, y_org, c_org, y_trg, c_trg)
        if a.lambda_id:
            loss_id = (nets.generator(x_real, c_org) - x_real).abs().mean()
            loss, parts['loss_id'] = loss + a.lambda_id * loss_id, loss_id.item()
        return loss, parts
    V.v1_g_loss = v1_g_loss   # what the v1 trainer calls
    if a.g_skip:   # G predicts a change of tanh's input: G(x, c) = tanh(atanh(0.999 x) + h(x, c)), the identity when h = 0
        def draw(self, x, c):   # what `Generator.forward` and `v1_g_loss` call
            return torch.tanh(self.main[:-1](V.tile_label(x, c)) + torch.atanh(0.999 * x.clamp(-1, 1))), None
        V.Generator.draw = draw
    # --g-mask / --mask-price are the library's copy mask (`V1Config.g_copy`, `copy_init`, `lambda_copy`); the rows of lesson 12
    # made before those fields existed patched G instead (the same G and price, its first weights drawn in another order)
    mask = ['g_copy=False', 'lambda_copy=0'] if a.g_mask is None else ['g_copy=True', f'copy_init={a.g_mask}', f'lambda_copy={a.mask_price}']
    train_v1.main(['--threads', '1', '--set', f'lambda_fake={a.lambda_fake}'] + mask + a.set + (['--out', a.out] if a.out else []))

def domain_critic(a):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch.nn as nn, stargan_v2.v1 as V, train_v1
    _build = V.build_v1
    def build_v1(cfg, with_d=True):   # the critic head with one output map per domain
        n = _build(cfg, with_d)
        if with_d: n.discriminator.conv1 = nn.Conv2d(n.discriminator.conv1.in_channels, cfg.num_domains, 3, 1, 1, bias=False)
        return n
    pick = lambda src, y: src[torch.arange(len(y)), y]
    def v1_d_loss(nets, cfg, x_real, y_org, c_trg):
        G, D = nets.generator, nets.discriminator
        y_trg = c_trg.argmax(1)
        out_src, out_cls = D(x_real)
        loss_real, loss_cls = -pick(out_src, y_org).mean(), V.classification_loss(out_cls, y_org)
        with torch.no_grad(): x_fake = G(x_real, c_trg)
        loss_fake = pick(D(x_fake)[0], y_trg).mean()
        alpha = torch.rand(len(x_real), 1, 1, 1, device=x_real.device)
        x_hat = (alpha * x_real + (1 - alpha) * x_fake).requires_grad_(True)
        loss_gp = V.gradient_penalty(pick(D(x_hat)[0], torch.where(alpha.flatten() > 0.5, y_org, y_trg)), x_hat)
        loss = loss_real + loss_fake + cfg.lambda_cls * loss_cls + cfg.lambda_gp * loss_gp
        return loss, {'loss_real': loss_real.item(), 'loss_fake': loss_fake.item(), 'loss_cls': loss_cls.item(), 'loss_gp': loss_gp.item()}
    def v1_g_loss(nets, cfg, x_real, y_org, c_org, y_trg, c_trg):
        G, D = nets.generator, nets.discriminator
        x_fake = G(x_real, c_trg)
        out_src, out_cls = D(x_fake)
        loss_fake, loss_cls = -pick(out_src, y_trg).mean(), V.classification_loss(out_cls, y_trg)
        loss_rec = (x_real - G(x_fake, c_org)).abs().mean()
        return loss_fake + cfg.lambda_rec * loss_rec + cfg.lambda_cls * loss_cls, {'loss_fake': loss_fake.item(), 'loss_rec': loss_rec.item(), 'loss_cls': loss_cls.item()}
    V.build_v1, V.v1_d_loss, V.v1_g_loss = build_v1, v1_d_loss, v1_g_loss
    train_v1.main(['--threads', '1', '--set', 'lambda_rec=1', 'lambda_fake=0'] + a.set + (['--out', a.out] if a.out else []))

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('probe', choices=['fooled', 'fake-class', 'domain-critic'])
    p.add_argument('run', nargs='?', help='fooled: a v1 run folder (config.json, checkpoints/)')
    p.add_argument('--iter', type=int, default=0, help='fooled: checkpoint iteration (default: the last)')
    p.add_argument('--lambda-fake', type=float, default=1., help='fake-class: weight of D learning the fake class (0: v1)')
    p.add_argument('--g-k-only', action='store_true', help="fake-class: G's term over the K domain logits only")
    p.add_argument('--lambda-id', type=float, default=0., help="fake-class: weight of an identity term |G(x, c_org) - x|")
    p.add_argument('--g-mask', type=float, nargs='?', const=2., default=None, metavar='OFFSET',
                   help="fake-class: G(x, c) = m x + (1 - m) o, a colour o and a copy mask m = sigmoid(logit + OFFSET) drawn by G (default offset 2)")
    p.add_argument('--mask-price', type=float, default=0., metavar='W', help="fake-class with --g-mask: G pays W * mean(-log(1 - m)), a price on copying")
    p.add_argument('--g-skip', action='store_true', help="fake-class: G(x, c) = tanh(atanh(0.999 x) + h(x, c)), a skip from input to output")
    p.add_argument('--set', nargs='*', default=[], metavar='KEY=VALUE', help='fake-class, domain-critic: override preset fields')
    p.add_argument('--out', default=None, help='fake-class, domain-critic: run folder')
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    if a.probe == 'fooled':
        if not a.run: p.error('fooled needs a run folder')
        fooled(a)
    elif a.probe == 'fake-class': fake_class(a)
    else: domain_critic(a)

if __name__ == '__main__': main()
