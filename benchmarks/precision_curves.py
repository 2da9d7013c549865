"""Do the loss curves of a mixed-precision run follow fp32? Trains the same preset from the same seed on the real data in
fp32 and in another precision (lesson 07b) and prints every loss term averaged over windows of iterations, side by
side, with the largest gap.

    python benchmarks/precision_curves.py --device cpu --threads 1 --iters 300            # shapes preset, bf16 vs fp32
    python benchmarks/precision_curves.py --device cuda --preset afhq --iters 300 --data PATH/afhq   # on a GPU

GAN training is chaotic: two runs whose numerics differ in the last bits drift apart over hundreds of iterations even
in fp32 (compare --other fp32 --seed-other 1 for the run-to-run spread). So read the windows as "same trend and same
scale", not "equal".
"""
import argparse, json, sys, tempfile, time

def run(preset, precision, iters, device, root, seed):
    from stargan_v2.core import get_config
    from stargan_v2.learner import train
    cfg = get_config(preset, total_iters=iters, ds_iter=iters, precision=precision, seed=seed, save_every=10**9,
                     sample_every=10**9, print_every=10**9)
    with tempfile.TemporaryDirectory() as d:
        t = time.time()
        learn = train(cfg, d, root=root, device=device, verbose=False, progress=False)
        return learn.loss_log.hist, time.time() - t

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--preset', default='shapes'); p.add_argument('--data', default=None, help='dataset folder (default: the preset\'s)')
    p.add_argument('--device', default=None); p.add_argument('--iters', type=int, default=300)
    p.add_argument('--other', default='bf16', help='precision compared with fp32 (bf16 or fp16)')
    p.add_argument('--window', type=int, default=50); p.add_argument('--threads', type=int, default=None)
    p.add_argument('--seed-other', type=int, default=None, help='seed of the second run (default: the preset\'s, like the first)')
    a = p.parse_args(argv)
    import torch
    if a.threads: torch.set_num_threads(a.threads)
    from stargan_v2.core import get_config
    seed = get_config(a.preset).seed
    h32, t32 = run(a.preset, 'fp32', a.iters, a.device, a.data, seed)
    h2, t2 = run(a.preset, a.other, a.iters, a.device, a.data, seed if a.seed_other is None else a.seed_other)
    terms = [k for k in h32 if k.startswith(('D/', 'G/')) and k != 'G/lambda_ds']
    W, n = a.window, len(h32['iter'])
    print(f"{a.preset}: fp32 {t32 / n:.3f} s/it, {a.other} {t2 / n:.3f} s/it ({a.other}/fp32 time ratio {t2 / t32:.2f})")
    print("| iterations | " + " | ".join(terms) + " |"); print("|---" * (len(terms) + 1) + "|")
    gaps = {}
    for s in range(0, n, W):
        row = []
        for k in terms:
            m1 = sum(h32[k][s:s + W]) / len(h32[k][s:s + W]); m2 = sum(h2[k][s:s + W]) / len(h2[k][s:s + W])
            gaps[k] = max(gaps.get(k, 0.), abs(m2 - m1) / max(abs(m1), 1e-3))
            row.append(f"{m1:.3f} / {m2:.3f}")
        print(f"| {s + 1}-{min(s + W, n)} | " + " | ".join(row) + " |")
    print(f"(each cell: fp32 / {a.other}, mean over the window)")
    print("largest relative gap of a window mean, per term: " + json.dumps({k: round(v, 3) for k, v in gaps.items()}))
    return 0

if __name__ == '__main__': sys.exit(main())
