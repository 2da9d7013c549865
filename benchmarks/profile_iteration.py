"""Where does a training iteration's time go? Profile a few iterations of a preset with torch.profiler.

Usage:  python benchmarks/profile_iteration.py [--preset shapes] [--iters 50] [--threads 1] [--rows 15] [--set KEY=VALUE ...]

Prints: seconds per iteration with and without the profiler, then the operators that took the most self CPU time
(and CUDA time on a GPU) over the profiled iterations, and the share of the wall time spent in convolution kernels (forward
and backward) and optimiser steps, and the time to load one batch. The first iterations are run unprofiled as a warm-up.
"""
import argparse, os, sys, tempfile, time

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--preset', default='shapes')
    p.add_argument('--iters', type=int, default=50, help='profiled iterations')
    p.add_argument('--warmup', type=int, default=10, help='unprofiled iterations first')
    p.add_argument('--threads', type=int, default=None, help='torch threads (default: torch default)')
    p.add_argument('--device', default=None, help="'cpu' or 'cuda' (default: cuda if available)")
    p.add_argument('--rows', type=int, default=15)
    p.add_argument('--set', nargs='*', default=[], metavar='KEY=VALUE', help='override preset fields')
    a = p.parse_args(argv)
    import torch
    from torch.profiler import profile, ProfilerActivity
    if a.threads: torch.set_num_threads(a.threads)
    from stargan_v2.core import get_config, set_seed
    from stargan_v2.learner import stargan_learner, _coerce, _fit
    from stargan_v2.data import get_dls
    dev = a.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    cfg = get_config(a.preset)
    cfg = cfg.replace(**dict(_coerce(cfg, kv) for kv in a.set))
    cfg = cfg.replace(save_every=10**9, sample_every=10**9, print_every=10**9, num_workers=0)
    set_seed(cfg.seed)
    out = tempfile.mkdtemp(prefix='profile_')
    learn = stargan_learner(get_dls(cfg, device=dev), cfg, out_dir=out, verbose=False)
    sync = torch.cuda.synchronize if dev == 'cuda' else (lambda: None)
    t = time.perf_counter(); _fit(learn, a.warmup, False); sync(); t_plain = (time.perf_counter() - t) / max(a.warmup, 1)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev == 'cuda' else [])
    with profile(activities=acts) as prof:
        t = time.perf_counter(); _fit(learn, a.iters, False); sync(); t_prof = (time.perf_counter() - t) / a.iters
    print(f"preset {a.preset} on {dev}, {torch.get_num_threads()} threads, cpus {os.cpu_count()}: "
          f"{t_plain:.4f} s/it unprofiled (warm-up), {t_prof:.4f} s/it under the profiler")
    ka = prof.key_averages()
    sort = 'self_cuda_time_total' if dev == 'cuda' else 'self_cpu_time_total'
    print(ka.table(sort_by=sort, row_limit=a.rows))
    wall_us = t_prof * a.iters * 1e6
    conv = sum(e.self_cpu_time_total for e in ka if 'conv' in e.key.lower())
    opt = sum(e.cpu_time_total for e in ka if e.key.startswith('Optimizer.step'))
    it = iter(learn.dls.train); next(it)
    t = time.perf_counter(); n = min(20, len(learn.dls.train) - 1)
    for _ in range(n): next(it)
    data = (time.perf_counter() - t) / max(n, 1)
    print(f"share of the profiled wall time: convolution kernels (forward + backward) {100 * conv / wall_us:.0f} %, "
          f"optimiser steps {100 * opt / wall_us:.0f} %; loading one batch (measured apart) {data * 1e3:.1f} ms "
          f"= {100 * data / max(t_plain, 1e-9):.0f} % of an unprofiled iteration")
    return 0

if __name__ == '__main__': sys.exit(main())
