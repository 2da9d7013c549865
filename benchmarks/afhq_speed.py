"""Seconds per StarGAN v2 iteration of the `afhq` preset (256 px, batch 8, fp32) on a GPU, through the real Learner.

Usage:  python benchmarks/afhq_speed.py [--iters 30] [--warmup 5] [--device cuda] [--preset afhq]

The data are random tensors of the right shapes already on the device, so this measures the networks, the four
optimiser steps and the EMA update (the training loop), not JPEG decoding.
"""
import argparse, json, sys, time
import torch

class _RandomBatches:
    "A stand-in train loader: `n` random 7-tuple batches on `device`."
    n_inp = 7
    def __init__(self, cfg, n, device):
        self.cfg, self.n, self.device, self.num_workers = cfg, n, torch.device(device), 0
        B, S, L, K = cfg.batch_size, cfg.img_size, cfg.latent_dim, cfg.num_domains
        g = torch.Generator().manual_seed(0)
        self.b = tuple(t.to(device) for t in (torch.randn(B, 3, S, S, generator=g).clamp(-1, 1), torch.randint(K, (B,), generator=g),
                       torch.randn(B, 3, S, S, generator=g).clamp(-1, 1), torch.randn(B, 3, S, S, generator=g).clamp(-1, 1),
                       torch.randint(K, (B,), generator=g), torch.randn(B, L, generator=g), torch.randn(B, L, generator=g)))
    def __len__(self): return self.n
    def __iter__(self): return iter([self.b] * self.n)
    def to(self, device): return self

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--iters', type=int, default=30); p.add_argument('--warmup', type=int, default=5)
    p.add_argument('--device', default='cuda'); p.add_argument('--preset', default='afhq')
    a = p.parse_args(argv)
    from fastai.data.core import DataLoaders
    from stargan_v2.core import get_config, set_seed
    from stargan_v2.learner import stargan_learner
    cfg = get_config(a.preset); set_seed(0)
    if cfg.w_hpf > 0: cfg = cfg.replace(w_hpf=0.)   # timing without the FAN (its weights cannot be downloaded here)
    dl = _RandomBatches(cfg, 10**6, a.device)
    dls = DataLoaders(dl, dl, device=a.device); dls.n_inp = 7
    learn = stargan_learner(dls, cfg)
    sync = torch.cuda.synchronize if 'cuda' in a.device else (lambda: None)
    times = []
    class _T(__import__('fastai.callback.core', fromlist=['Callback']).Callback):
        order = 50
        def before_batch(self): sync(); self.t = time.perf_counter()
        def after_batch(self): sync(); times.append(time.perf_counter() - self.t)
    with learn.no_bar(), learn.no_logging(): learn.fit_iters(a.warmup + a.iters, cbs=_T())
    t = times[a.warmup:]
    res = dict(device=torch.cuda.get_device_name() if 'cuda' in a.device else a.device, preset=a.preset, img_size=cfg.img_size,
               batch_size=cfg.batch_size, precision='fp32 (TF32 convs as PyTorch default)', iters=len(t),
               s_per_iter=round(sum(t) / len(t), 4), s_per_iter_min=round(min(t), 4),
               hours_for_100k=round(sum(t) / len(t) * 100_000 / 3600, 1),
               max_mem_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if 'cuda' in a.device else None)
    print(json.dumps(res, indent=1))
    return 0

if __name__ == '__main__': sys.exit(main())
