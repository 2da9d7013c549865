"""Seconds per StarGAN v2 iteration and peak memory in fp32, bf16, bf16 + torch.compile and bf16 + channels-last, each as
a ratio to fp32 measured in the same run (lesson 07b). One prepared command, bounded in time:

    python benchmarks/gpu_speed.py                    # one CUDA GPU: the afhq preset, 256 px, batch 8 (about 5-8 min on an H100)
    python benchmarks/gpu_speed.py --device cpu       # this CPU, one thread: the shapes preset (16 px, batch 8)

Each mode runs in its own child process (clean peak-memory counters and compile caches; a mode that overruns its share
of --budget is reported as 'timeout' and the others still print). The data are random tensors of the right shapes
already on the device, so this measures the networks, the four optimiser steps and the EMA update, not JPEG decoding.
Compiled modes exclude compilation from the timing (it happens during the warm-up iterations) and report it apart.
"""
import argparse, json, os, resource, subprocess, sys, time
from pathlib import Path

GPU_MODES = ('fp32', 'bf16', 'bf16+channels_last', 'bf16+compile')
CPU_MODES = ('fp32', 'bf16', 'fp32+compile')

def _parse_mode(mode:str) -> dict:
    parts = mode.split('+')
    if parts[0] not in ('fp32', 'bf16', 'fp16') or any(p not in ('compile', 'channels_last') for p in parts[1:]):
        raise SystemExit(f"gpu_speed: bad mode {mode!r}: write PRECISION[+compile][+channels_last], PRECISION in fp32/bf16/fp16")
    return dict(precision=parts[0], compile='compile' in parts, channels_last='channels_last' in parts)

class _RandomBatches:
    "A stand-in train loader: `n` random 7-tuple batches on `device`."
    n_inp, num_workers = 7, 0
    def __init__(self, cfg, n, device):
        import torch
        self.n, self.device = n, torch.device(device)
        B, S, L, K = cfg.batch_size, cfg.img_size, cfg.latent_dim, cfg.num_domains
        g = torch.Generator().manual_seed(0)
        img = lambda: (torch.rand(B, 3, S, S, generator=g) * 2 - 1)
        self.b = tuple(t.to(device) for t in (img(), torch.randint(K, (B,), generator=g), img(), img(),
                                              torch.randint(K, (B,), generator=g), torch.randn(B, L, generator=g), torch.randn(B, L, generator=g)))
    def __len__(self): return self.n
    def __iter__(self): return iter([self.b] * self.n)
    def to(self, device): return self

def child(a) -> dict:
    "Time one mode in this process; returns the measured figures."
    import torch
    if a.device == 'cpu': torch.set_num_threads(a.threads)
    from fastai.callback.core import Callback
    from fastai.data.core import DataLoaders
    from stargan_v2.core import get_config, set_seed
    from stargan_v2.learner import stargan_learner
    from stargan_v2.scale import scale_learner
    cfg = get_config(a.preset, batch_size=a.batch_size, **_parse_mode(a.child))
    if cfg.w_hpf > 0: cfg = cfg.replace(w_hpf=0.)   # no FAN weights here
    set_seed(0)
    dl = _RandomBatches(cfg, 10**6, a.device)
    dls = DataLoaders(dl, dl, device=a.device); dls.n_inp = 7
    learn = scale_learner(stargan_learner(dls, cfg), cfg)
    cuda = a.device.startswith('cuda')
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    times = []
    class _T(Callback):
        order = -50
        def before_batch(self): sync(); self.t = time.perf_counter()
        def after_batch(self): sync(); times.append(time.perf_counter() - self.t)
    warmup = a.warmup + (a.compile_warmup if cfg.compile else 0)
    if cuda: torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with learn.no_bar(), learn.no_logging(): learn.fit_iters(warmup + a.iters, cbs=_T())
    t = times[warmup:]
    parts = learn.loss_parts
    return dict(mode=a.child, s_per_iter=sum(t) / len(t), s_per_iter_min=min(t), warmup_s=sum(times[:warmup]),
                total_s=time.perf_counter() - t0, iters=len(t),
                peak_mem_gib=(torch.cuda.max_memory_allocated() / 2**30) if cuda else None,
                peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                finite=all(v == v and abs(v) != float('inf') for v in parts.values()),
                d_reg=parts.get('D/latent_reg'))

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--device', default='cuda', help="cuda (default) or cpu")
    p.add_argument('--preset', default=None, help="default: afhq on cuda, shapes on cpu")
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--modes', default=None, help=f"comma-separated; default GPU {','.join(GPU_MODES)}; CPU {','.join(CPU_MODES)}")
    p.add_argument('--iters', type=int, default=None, help='timed iterations per mode (default 20 on GPU, 30 on CPU)')
    p.add_argument('--warmup', type=int, default=3, help='untimed iterations per mode')
    p.add_argument('--compile-warmup', type=int, default=2, help='extra untimed iterations for compiled modes (recompiles)')
    p.add_argument('--budget', type=float, default=450., help='seconds for the whole run (GPU default fits the 8-minute target)')
    p.add_argument('--threads', type=int, default=1, help='CPU threads (CPU mode)')
    p.add_argument('--child', default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    cpu = a.device == 'cpu'
    a.preset = a.preset or ('shapes' if cpu else 'afhq')
    a.iters = a.iters or (30 if cpu else 20)
    if a.child:
        print('RESULT ' + json.dumps(child(a)), flush=True); return 0
    import torch
    if not cpu and not torch.cuda.is_available(): raise SystemExit("gpu_speed: no CUDA GPU here; use --device cpu for the CPU mode")
    modes = a.modes.split(',') if a.modes else list(CPU_MODES if cpu else GPU_MODES)
    for m in modes: _parse_mode(m)
    dev_name = torch.cuda.get_device_name() if not cpu else f'CPU ({os.cpu_count()} cores, {a.threads} thread(s))'
    print(f"gpu_speed: {dev_name}, preset {a.preset}, batch {a.batch_size}, {a.iters} timed iterations per mode, "
          f"modes {modes}, budget {a.budget:.0f} s", flush=True)
    env = {**os.environ, 'PYTHONPATH': str(Path(__file__).resolve().parents[1]) + os.pathsep + os.environ.get('PYTHONPATH', '')}
    if cpu: env['OMP_NUM_THREADS'] = str(a.threads)
    t_start, res = time.time(), {}
    for i, m in enumerate(modes):
        left = a.budget - (time.time() - t_start)
        share = left / (len(modes) - i) if 'compile' not in m else left   # compiled modes run last and get what is left
        if left < 20: res[m] = dict(mode=m, error='no budget left'); continue
        cmd = [sys.executable, __file__, '--child', m, '--device', a.device, '--preset', a.preset, '--batch-size', str(a.batch_size),
               '--iters', str(a.iters), '--warmup', str(a.warmup), '--compile-warmup', str(a.compile_warmup), '--threads', str(a.threads)]
        try:
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=max(share, 20))
            line = [l for l in r.stdout.splitlines() if l.startswith('RESULT ')]
            res[m] = json.loads(line[-1][7:]) if line else dict(mode=m, error=(r.stderr.strip().splitlines() or ['failed'])[-1][:200])
        except subprocess.TimeoutExpired: res[m] = dict(mode=m, error=f'timeout after {share:.0f} s')
        r0 = res[m]
        print(f"  {m:<28} " + (f"{r0['s_per_iter']:.4f} s/it (warm-up {r0['warmup_s']:.0f} s)" if 'error' not in r0 else r0['error']), flush=True)
    base = res.get('fp32', {})
    mem = 'peak_mem_gib' if not cpu else 'peak_rss_gib'
    print(f"\n| mode | s/it | speed-up vs fp32 | {'peak GPU memory' if not cpu else 'peak RSS'} (GiB) | memory vs fp32 | warm-up (s) | losses finite |")
    print("|---|---|---|---|---|---|---|")
    for m, r in res.items():
        if 'error' in r: print(f"| {m} | {r['error']} | | | | | |"); continue
        sp = f"{base['s_per_iter'] / r['s_per_iter']:.2f}x" if 's_per_iter' in base else '-'
        mr = f"{r[mem] / base[mem]:.2f}" if base.get(mem) else '-'
        print(f"| {m} | {r['s_per_iter']:.4f} | {sp} | {r[mem]:.2f} | {mr} | {r['warmup_s']:.0f} | {r['finite']} |")
    if cpu and 's_per_iter' in base:
        for m, label in (('bf16', 'bf16/fp32 time ratio'), ('fp32+compile', 'compile/eager time ratio (fp32)')):
            if 's_per_iter' in res.get(m, {}): print(f"{label}: {res[m]['s_per_iter'] / base['s_per_iter']:.2f}")
    print(f"\ntotal {time.time() - t_start:.0f} s")
    print(json.dumps(dict(device=dev_name, preset=a.preset, batch_size=a.batch_size, results=res)))
    return 0

if __name__ == '__main__': sys.exit(main())
