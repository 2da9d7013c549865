"StarGAN v1 (lesson 12): official parameter counts, the released-weights layout, exact resume, NaN guard, foreign checkpoints, a training smoke test."
import pickle
import pytest, torch
from torch import nn
import torch.nn.functional as F
from stargan_v2.core import count_params
from stargan_v2.checkpoints import CheckpointMismatch, UnsafeCheckpointError
from stargan_v2.v1 import V1Config, build_v1, Generator, Discriminator, load_official_v1, v1_lr, tile_label

def test_official_parameter_counts():
    "The counts computed from the official layer tables (reference notes §2, §3, §8b)."
    n = build_v1(V1Config.official())
    assert (count_params(n.generator), count_params(n.discriminator)) == (8_430_528, 44_762_048)
    n8 = build_v1(V1Config.official(num_domains=8))
    assert count_params(n8.generator) + count_params(n8.discriminator) == 53_226_560   # the paper's 53.2M
    assert count_params(Generator(64, 15, 6)) == 8_461_888 and count_params(Discriminator(128, 64, 13, 6)) == 44_827_584

def test_official_decay_does_not_decay():
    lin, off = V1Config.official(), V1Config.official(decay='official')
    assert v1_lr(200_000, 1e-4, lin) == pytest.approx(0., abs=1e-15)
    assert v1_lr(200_000, 1e-4, off) == pytest.approx(0.999e-4, rel=1e-12)

# --- the authors' layout, written independently of stargan_v2.v1: nn.Sequential `main`, IN with running stats ---------
def _in(n): return nn.InstanceNorm2d(n, affine=True, track_running_stats=True)

class _OffRes(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.main = nn.Sequential(nn.Conv2d(d, d, 3, 1, 1, bias=False), _in(d), nn.ReLU(),
                                  nn.Conv2d(d, d, 3, 1, 1, bias=False), _in(d))
    def forward(self, x): return x + self.main(x)

class _OffG(nn.Module):
    "Layout of the official v1 generator (reference notes §2): conv7, 2 down, R res blocks, 2 up, conv7, tanh."
    def __init__(self, conv_dim, c_dim, repeat_num):
        super().__init__()
        L, d = [nn.Conv2d(3 + c_dim, conv_dim, 7, 1, 3, bias=False), _in(conv_dim), nn.ReLU()], conv_dim
        for _ in range(2): L += [nn.Conv2d(d, 2 * d, 4, 2, 1, bias=False), _in(2 * d), nn.ReLU()]; d *= 2
        L += [_OffRes(d) for _ in range(repeat_num)]
        for _ in range(2): L += [nn.ConvTranspose2d(d, d // 2, 4, 2, 1, bias=False), _in(d // 2), nn.ReLU()]; d //= 2
        L += [nn.Conv2d(d, 3, 7, 1, 3, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*L)
    def forward(self, x, c):
        return self.main(torch.cat([x, c.view(*c.shape, 1, 1).expand(-1, -1, *x.shape[2:])], 1))

class _OffD(nn.Module):
    def __init__(self, img_size, conv_dim, c_dim, repeat_num):
        super().__init__()
        L, d = [], 3
        for i in range(repeat_num): L += [nn.Conv2d(d, conv_dim * 2**i, 4, 2, 1), nn.LeakyReLU(0.01)]; d = conv_dim * 2**i
        self.main = nn.Sequential(*L)
        self.conv1, self.conv2 = nn.Conv2d(d, 1, 3, 1, 1, bias=False), nn.Conv2d(d, c_dim, img_size // 2**repeat_num, bias=False)
    def forward(self, x): h = self.main(x); return self.conv1(h), self.conv2(h).flatten(1)

def _trained_like(m):
    "Random weights and non-trivial running statistics, as in a released file."
    torch.manual_seed(0)
    with torch.no_grad():
        for p in m.parameters(): p.normal_(0, 0.05)
    for x in [torch.randn(2, *s) for s in [(3, 32, 32)]] * 2:
        try: m(x, F.one_hot(torch.tensor([0, 2]), 5).float())
        except TypeError: m(x)
    return m

def test_official_v1_weights_load_and_match(tmp_path):
    "The released G/D layout (state dicts with IN running stats) loads with weights_only=True and computes the same as the authors' train-mode inference."
    offG, offD = _trained_like(_OffG(16, 5, 2)), _trained_like(_OffD(32, 8, 5, 4))
    assert 'main.1.running_mean' in offG.state_dict() and 'main.9.main.1.num_batches_tracked' in offG.state_dict()
    torch.save(offG.state_dict(), tmp_path/'200000-G.ckpt'); torch.save(offD.state_dict(), tmp_path/'200000-D.ckpt')
    nets = load_official_v1(tmp_path/'200000-G.ckpt', tmp_path/'200000-D.ckpt')
    x, c = torch.rand(3, 3, 32, 32) * 2 - 1, F.one_hot(torch.tensor([1, 3, 4]), 5).float()
    offG.train()   # the official test never calls .eval(): IN uses per-image statistics
    with torch.no_grad():
        torch.testing.assert_close(nets.generator(x, c), offG(x, c), rtol=1e-5, atol=1e-5)
        for a, b in zip(nets.discriminator(x), offD(x)): torch.testing.assert_close(a, b)
        offG.eval(); assert (offG(x, c) - nets.generator(x, c)).abs().max() > 1e-3   # the .eval() trap: running stats differ

def test_official_loader_refuses_bad_files(tmp_path):
    torch.save(_OffD(32, 8, 5, 4).state_dict(), tmp_path/'D.ckpt')
    with pytest.raises(CheckpointMismatch, match='use the -G.ckpt file'): load_official_v1(tmp_path/'D.ckpt')
    class Evil:
        def __reduce__(self): return (print, ('executed',))
    torch.save({'main.0.weight': torch.zeros(1), 'x': Evil()}, tmp_path/'evil.ckpt')
    with pytest.raises(UnsafeCheckpointError): load_official_v1(tmp_path/'evil.ckpt')
    sd = _OffG(16, 5, 2).state_dict(); sd['main.3.weight'] = torch.zeros(1, 1, 4, 4)
    torch.save(sd, tmp_path/'broken-G.ckpt')
    with pytest.raises(CheckpointMismatch, match='does not fit'): load_official_v1(tmp_path/'broken-G.ckpt')
