"FID and LPIPS maths against independent references, and the plumbing on random-weight networks (offline)."
import hashlib, warnings
from pathlib import Path
import numpy as np
import pytest
import torch
from torch import nn
from PIL import Image
from torchvision.models import inception_v3
from pytorch_fid.fid_score import calculate_frechet_distance
import pytorch_fid.inception as pfi

import stargan_v2.metrics as M
from stargan_v2.core import to_uint8, DownloadError




def _cov(rng, d):
    a = rng.normal(size=(d, d)); return a @ a.T / d

@pytest.mark.parametrize('d', [2, 8, 64])
def test_frechet_matches_pytorch_fid(d):
    rng = np.random.default_rng(d)
    m1, m2, s1, s2 = rng.normal(size=d), rng.normal(size=d), _cov(rng, d), _cov(rng, d)
    ours = M.frechet_distance(m1, s1, m2, s2)
    assert ours == pytest.approx(calculate_frechet_distance(m1, s1, m2, s2), rel=1e-8, abs=1e-8)
    assert ours == pytest.approx(M.frechet_distance(m1, s1, m2, s2, method='eigh'), rel=1e-6, abs=1e-8)

def test_frechet_closed_forms():
    rng = np.random.default_rng(0)
    d = 10; m1, m2, s = rng.normal(size=d), rng.normal(size=d), _cov(rng, d)
    assert M.frechet_distance(m1, s, m1, s) == pytest.approx(0, abs=1e-8)
    assert M.frechet_distance(m1, s, m2, s) == pytest.approx(((m1 - m2)**2).sum(), rel=1e-8)
    a, b = rng.uniform(.1, 3, d), rng.uniform(.1, 3, d)
    want = ((m1 - m2)**2).sum() + ((np.sqrt(a) - np.sqrt(b))**2).sum()
    for method in ('sqrtm', 'eigh'):
        assert M.frechet_distance(m1, np.diag(a), m2, np.diag(b), method=method) == pytest.approx(want, rel=1e-8)

def test_frechet_rank_deficient_is_real_and_agrees():
    rng = np.random.default_rng(1)
    x1, x2 = rng.normal(size=(8, 32)), rng.normal(size=(8, 32)) + .3   # rank 7 covariances
    s = M.activation_stats(x1), M.activation_stats(x2)
    assert M.frechet_distance(*s[0], *s[1]) == pytest.approx(M.frechet_distance(*s[0], *s[1], method='eigh'), rel=1e-5)

def test_frechet_eps_fallback_on_defective_product():
    J1, J2 = -np.array([[0., 1.], [1., 0.]]), -np.array([[0., 0.], [0., 1.]])   # J1 @ J2 is a Jordan block: no square root
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        d = M.frechet_distance(np.zeros(2), J1, np.zeros(2), J2)
    assert np.isfinite(d) and any('singular' in str(m.message) for m in w)

def test_frechet_rejects_non_covariances_and_bad_shapes():
    with pytest.raises(ValueError, match='imaginary component'):
        M.frechet_distance(np.zeros(2), np.diag([1., -1.]), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match='shapes do not match'):
        M.frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(2))

def test_activation_stats_matches_numpy():
    f = torch.randn(40, 6)
    mu, sig = M.activation_stats(f)
    np.testing.assert_allclose(mu, f.double().mean(0).numpy(), atol=1e-12)
    np.testing.assert_allclose(sig, np.cov(f.double().numpy(), rowvar=False), atol=1e-12)

def test_quantize_matches_core_to_uint8():
    x = torch.randn(2, 3, 8, 8) * 1.2
    np.testing.assert_array_equal(M.quantize(x).permute(0, 2, 3, 1).numpy(), to_uint8(x))
    u = M.quantize(x); assert M.quantize(u) is u

def test_official_extractor_equals_torchvision_forward():
    tv = inception_v3(weights=None, aux_logits=True, init_weights=False).eval()
    ext = M.InceptionFeatures(tv, 'official')
    x = torch.rand(2, 3, 40, 40) * 2 - 1
    f = ext(x)
    tv.fc = nn.Identity()
    with torch.no_grad(): ref = tv(M.official_preprocess(M.quantize(x)))   # transform_input is False by default with weights=None
    assert f.shape == (2, 2048)
    torch.testing.assert_close(f, ref, atol=1e-4, rtol=1e-4)

def test_standard_extractor_equals_pytorch_fid():
    torch.manual_seed(0)
    net = M.fid_inception_net()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d): m.running_mean.uniform_(-.1, .1); m.running_var.uniform_(.5, 1.5)
    orig = pfi.load_state_dict_from_url
    pfi.load_state_dict_from_url = lambda *a, **k: net.state_dict()
    try: pf = pfi.InceptionV3([3]).eval()
    finally: pfi.load_state_dict_from_url = orig
    u = (torch.rand(3, 3, 48, 48) * 255).to(torch.uint8)
    with torch.no_grad(): ref = pf(u.float() / 255)[0].flatten(1)
    torch.testing.assert_close(M.InceptionFeatures(net, 'standard')(u), ref, atol=1e-4, rtol=1e-4)

def test_weights_download_with_hash(tmp_path, monkeypatch):
    "The pretrained path: download (file:// here) into the cache, check the hash, load the state dict."
    monkeypatch.setenv('STARGAN_V2_CACHE', str(tmp_path/'cache'))
    net = inception_v3(weights=None, aux_logits=True, init_weights=False)
    src = tmp_path/'srv'/'inc.pth'; src.parent.mkdir(); torch.save(net.state_dict(), src)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()[:8]
    monkeypatch.setitem(M.INCEPTION_WEIGHTS, 'official', (src.as_uri(), sha))
    ext = M.inception_features('official')
    assert (tmp_path/'cache'/'weights'/'inc.pth').exists() and ext.tag.startswith('official-inc-')
    torch.testing.assert_close(ext.net.Mixed_7c.branch_pool.conv.weight, net.Mixed_7c.branch_pool.conv.weight)
    monkeypatch.setitem(M.INCEPTION_WEIGHTS, 'standard', (src.as_uri(), '00000000'))   # wrong hash: refused
    with pytest.raises(DownloadError, match='SHA-256'): M.inception_features('standard')


class _Toy(nn.Module):
    def __init__(self, tag='toy'): super().__init__(); self.n, self.tag = 0, tag
    def forward(self, x): self.n += 1; return nn.functional.adaptive_avg_pool2d(M.quantize(x).float(), 2).flatten(1)

def _folder(tmp_path, n=7):
    d = tmp_path/'data'/'train'/'cat'; d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n): Image.fromarray((rng.random((24, 24, 3)) * 255).astype(np.uint8)).save(d/f'{i:03d}.png')
    return d

def test_folder_stats_cache(tmp_path):
    d, cache = _folder(tmp_path), tmp_path/'cache'
    toy = _Toy()
    mu, sig = M.folder_stats(d, toy, 16, bs=3, cache=cache)
    assert toy.n == 3
    mu2, sig2 = M.folder_stats(d, toy, 16, bs=3, cache=cache)
    assert toy.n == 3                                  # read from the cache
    np.testing.assert_array_equal(sig, sig2)
    want = M.activation_stats(toy(M.load_images(sorted(d.glob('*.png')), 16)))
    np.testing.assert_allclose(mu, want[0], atol=1e-6)
    other = _Toy('other'); M.folder_stats(d, other, 16, bs=3, cache=cache); assert other.n == 3   # other network: own entry
    M.folder_stats(d, toy, 20, bs=3, cache=cache); assert toy.n == 7                              # other size: own entry
    Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(d/'new.png')
    M.folder_stats(d, toy, 16, bs=3, cache=cache); assert toy.n == 10                             # changed folder: recomputed
    assert len(list(cache.glob('*.npz'))) == 4

def test_list_images_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='not a folder'): M.list_images(tmp_path/'nope')
    (tmp_path/'empty').mkdir()
    with pytest.raises(FileNotFoundError, match='No images'): M.list_images(tmp_path/'empty')

def test_load_images_matches_pil_resize(tmp_path):
    d = _folder(tmp_path, 2)
    f = sorted(d.glob('*.png'))[0]
    want = np.asarray(Image.open(f).convert('RGB').resize((16, 16), Image.BILINEAR))
    np.testing.assert_array_equal(M.load_images([f], 16)[0].permute(1, 2, 0).numpy(), want)


@pytest.fixture(scope='module')
def lp(): return M.load_lpips(pretrained=False)

def test_lpips_feats_route_equals_package(lp):
    x0, x1 = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    torch.testing.assert_close(M.lpips_from_feats(lp, M.lpips_feats(lp, x0), M.lpips_feats(lp, x1)), lp(x0, x1).flatten(), atol=1e-5, rtol=1e-5)

def test_lpips_diversity_vs_naive_pairs(lp):
    outs = torch.rand(5, 3, 3, 64, 64) * 2 - 1
    naive = torch.stack([lp(outs[i], outs[j]).flatten() for i in range(5) for j in range(5) if i < j]).mean(0)
    torch.testing.assert_close(M.lpips_diversity(lp, outs), naive, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(M.lpips_diversity(lp, outs[:1].expand(4, -1, -1, -1, -1)), torch.zeros(3), atol=1e-6, rtol=0)
    assert M.lpips_diversity(lp, torch.rand(2, 2, 3, 16, 16)).shape == (2,)
    with pytest.raises(ValueError, match='at least 2'): M.lpips_diversity(lp, outs[:1])

@pytest.mark.parametrize('n', [3, 30, 80])
def test_fid_to_stats_sample_space_is_exact(n):
    "FID against cached stats: the n×n sample-space route (n ≤ D) and the eigh route (n > D) equal the textbook formula."
    g = torch.Generator().manual_seed(n)
    real = torch.randn(500, 40, generator=g) @ torch.randn(40, 40, generator=g) * .2
    fake = torch.randn(n, 40, generator=g) + .3
    mu, sig = M.activation_stats(real)
    assert M.fid_to_stats(fake, mu, sig) == pytest.approx(calculate_frechet_distance(*M.activation_stats(fake), mu, sig), rel=1e-6)

def test_random_inception_features_are_not_degenerate():
    "weights=None calibrates BatchNorm on noise: different images give different features (so plumbing tests see FID > 0)."
    f = M.inception_features('standard', None)(torch.rand(3, 3, 32, 32) * 2 - 1)
    assert f.std(0).mean() > 1e-3
    assert M.inception_features('standard', None).tag == M.inception_features('standard', None).tag   # seeded: stable cache key
