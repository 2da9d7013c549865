"""What the reliability checks of issue #12 cost: the NaN guard's weight check (run every `print_every`/`save_every`
iteration and before every save) on the full-size AFHQ networks, and `read_image` vs a plain PIL open on a Shapes image.

    python benchmarks/reliability_overhead.py          # one CPU thread; add --device cuda on a GPU box
"""
import argparse, time
import torch
from PIL import Image
from stargan_v2.core import Config
from stargan_v2.models import build_nets, ema_copy
from stargan_v2.checkpoints import nonfinite_entries
from stargan_v2.data import read_image, find_images
from stargan_v2.shapes import shapes_path

def best(f, n):
    ts = []
    for _ in range(n):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return min(ts)

if __name__ == '__main__':
    ap = argparse.ArgumentParser(); ap.add_argument('--device', default='cpu'); ap.add_argument('--threads', type=int, default=1)
    a = ap.parse_args(); torch.set_num_threads(a.threads)
    nets = build_nets(Config.afhq()).to(a.device); ema = ema_copy(nets)
    n = sum(t.numel() for m in (nets, ema) for t in m.state_dict().values())
    sync = torch.cuda.synchronize if a.device.startswith('cuda') else (lambda: None)
    def check(): nonfinite_entries({k: m.state_dict() for k, m in nets.named_children()}); nonfinite_entries(ema.state_dict()); sync()
    t = best(check, 5)
    print(f"weight check, AFHQ nets + EMA ({n / 1e6:.0f} M values) on {a.device}: {t * 1e3:.1f} ms "
          f"(the afhq preset runs it every print_every=10 iterations: {t / 10 * 1e3:.2f} ms per iteration)")
    files = find_images(shapes_path()/'train')[:300]
    plain = best(lambda: [Image.open(f).convert('RGB') for f in files], 3) / len(files)
    ours = best(lambda: [read_image(f) for f in files], 3) / len(files)
    print(f"image reading, {len(files)} Shapes PNGs: plain PIL open+convert {plain * 1e6:.0f} µs/image, read_image {ours * 1e6:.0f} µs/image")
