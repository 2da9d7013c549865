"Data pipeline: batch structure and labels (Shapes and an AFHQ-style folder), balance, reproducibility, fastai, downloads, bad input."
import warnings, zipfile
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from torch import nn
from stargan_v2.core import Config, set_seed, rng_state, set_rng_state
from stargan_v2.data import (get_dls, fixed_batch, DomainFolder, domain_names, find_images, check_dataset, cli_data,
                             download_dataset, download_afhq, plan_train_batch, DataError, BadImageError, data_root)
from stargan_v2.core import DownloadError
from stargan_v2.shapes import measure_shapes, SHAPE_DOMAINS


def _shapes_dls(**kw):
    cfg = Config.shapes(**kw)
    return cfg, get_dls(cfg, device='cpu', num_workers=0)


def test_shapes_batches_have_the_paper_structure():
    cfg, dls = _shapes_dls()
    set_seed(1)
    b = dls.one_batch()
    B, S, L = cfg.batch_size, cfg.img_size, cfg.latent_dim
    assert [tuple(t.shape) for t in b] == [(B, 3, S, S), (B,), (B, 3, S, S), (B, 3, S, S), (B,), (B, L), (B, L)]
    assert b[1].dtype == b[4].dtype == torch.long and b[0].dtype == torch.float32
    for x in (b[0], b[2], b[3]): assert x.min() >= -1 and x.max() <= 1 and x.min() < -0.5 and x.max() > 0.5
    assert dls.n_inp == 7 and len(dls.train) == 1500 // B and dls.domains == list(SHAPE_DOMAINS)
    assert not torch.equal(b[2], b[3])


def test_labels_match_the_pixels():
    "Every image of a batch shows the shape its label says (measured from pixels), for sources and both references."
    cfg, dls = _shapes_dls(img_size=64, batch_size=32)
    set_seed(0)
    b = dls.one_batch()
    for x, y in ((b[0], b[1]), (b[2], b[4]), (b[3], b[4])):
        got = measure_shapes(x).domain
        assert (got == [SHAPE_DOMAINS[i] for i in y.tolist()]).mean() >= 0.9   # random crops may cut a corner
    v = next(iter(dls.valid))                                                  # no augmentation: exact
    for x, y in ((v[0], v[1]), (v[2], v[4]), (v[3], v[4])):
        assert list(measure_shapes(x).domain) == [SHAPE_DOMAINS[i] for i in y.tolist()]


def test_sampling_is_class_balanced_and_references_share_a_domain(tmp_path):
    for d, n in (('a', 3), ('b', 40), ('c', 10)):
        (tmp_path/'train'/d).mkdir(parents=True)
        for i in range(n): Image.new('RGB', (8, 8), (i, 0, 0)).save(tmp_path/'train'/d/f'{i}.png')
    ds = DomainFolder(tmp_path, 'train', img_size=8)
    set_seed(0)
    plans = plan_train_batch(ds, 6000, latent_dim=2)
    ys = np.bincount([ds.labels[p[0]] for p in plans], minlength=3) / 6000
    yt = np.bincount([p[3] for p in plans], minlength=3) / 6000
    assert np.abs(ys - 1/3).max() < 0.03 and np.abs(yt - 1/3).max() < 0.03
    assert all(ds.labels[p[1]] == ds.labels[p[2]] == p[3] and p[1] != p[2] for p in plans)
    files_a = {p[0] for p in plans if ds.labels[p[0]] == 0}
    assert len(files_a) == 3                                   # every image of the small domain is used


def test_same_seed_same_batches_and_rng_restore():
    _, dls = _shapes_dls()
    set_seed(5); a = [next(iter(dls.train)) for _ in range(2)]
    set_seed(5); b = [next(iter(dls.train)) for _ in range(2)]
    set_seed(6); c = next(iter(dls.train))
    assert all(torch.equal(u, v) for x, y in zip(a, b) for u, v in zip(x, y))
    assert not torch.equal(a[0][0], c[0])
    it = iter(dls.train); next(it); st = rng_state(); nxt = next(it)
    set_rng_state(st)
    assert all(torch.equal(u, v) for u, v in zip(nxt, next(iter(dls.train))))


def test_valid_and_fixed_batch_are_deterministic():
    cfg, dls = _shapes_dls()
    S = cfg.img_size
    set_seed(0); v1 = list(dls.valid)
    set_seed(1); v2 = list(dls.valid)
    assert len(v1) == 10 and all(torch.equal(u, w) for x, y in zip(v1, v2) for u, w in zip(x, y))
    srcs = torch.cat([v[1] for v in v1])
    assert torch.bincount(srcs).tolist() == [100, 100, 100]                    # every val image once
    f1, f2 = fixed_batch(dls), fixed_batch(dls, 32)
    assert len(f1) == 4 and all(torch.equal(a, b) for a, b in zip(f1, f2))
    assert f1[0].shape == (32, 3, S, S) and f1[1][:6].tolist() == [0, 1, 2, 0, 1, 2]
    assert torch.equal(f1[0], v1[0][0])


def test_fastai_learner_gets_the_7_tuple_in_xb():
    from fastai.learner import Learner
    from fastai.callback.core import Callback, CancelBatchException
    cfg, dls = _shapes_dls(batch_size=64)
    seen = []
    class Peek(Callback):
        def before_batch(self):
            seen.append((len(self.learn.xb), self.learn.yb, self.learn.xb[0].shape, self.training)); raise CancelBatchException
    Learner(dls, nn.Linear(1, 1), loss_func=lambda *a: 0, cbs=Peek()).fit(1)
    assert len(seen) == len(dls.train) + len(dls.valid)
    assert seen[0] == (7, (), torch.Size([64, 3, cfg.img_size, cfg.img_size]), True) and seen[-1][3] is False


def test_workers_give_the_same_structure():
    cfg = Config.tiny()
    dls = get_dls(cfg, device='cpu', num_workers=2)
    b = next(iter(dls.train))
    assert len(b) == 7 and b[0].shape == (cfg.batch_size, 3, 16, 16)
    v0 = next(iter(get_dls(cfg, device='cpu', num_workers=0).valid))
    assert all(torch.equal(x, y) for x, y in zip(next(iter(dls.valid)), v0))   # same data with or without workers


def _afhq_folder(root, splits=('train', 'val'), n=4, size=40):
    "AFHQ-like folder with awkward files: JPG upper case, nested sub-folder, grayscale, RGBA, palette."
    rng = np.random.default_rng(0)
    for s in splits:
        for d, col in (('cat', 0), ('dog', 1), ('wild', 2)):
            f = Path(root)/s/d; (f/'nested').mkdir(parents=True)
            for i in range(n):
                a = np.zeros((size, size, 3), np.uint8); a[..., col] = 255; a[..., (col+1) % 3] = rng.integers(0, 60)
                Image.fromarray(a).save(f/(f'{i}.JPG' if i == 0 else f'{i}.jpg' if i < 3 else f'nested/{i}.png'))
            Image.fromarray(a).convert('RGBA').save(f/'rgba.png')
            Image.fromarray(a).convert('P').save(f/'pal.png')
            Image.fromarray(a).convert('L').save(f/'gray.jpeg')
            (f/'notes.txt').write_text('not an image')
    return Path(root)


def test_afhq_style_folder(tmp_path):
    root = _afhq_folder(tmp_path/'afhq')
    assert domain_names(root) == ['cat', 'dog', 'wild']
    assert len(find_images(root/'train'/'cat')) == 7
    cfg = Config.tiny(img_size=16, batch_size=6)
    dls = get_dls(cfg, root=root, device='cpu', num_workers=0)
    set_seed(0)
    for b in list(dls.train)[:3] + list(dls.valid):
        for x, y in ((b[0], b[1]), (b[2], b[4]), (b[3], b[4])):
            means = x.mean((2, 3))                      # the domain's colour channel is the brightest (gray files aside)
            colour = means.max(1).values - means.min(1).values > 0.5
            assert (means.argmax(1)[colour] == y[colour]).all()


def test_downloads_from_a_local_zip(tmp_path):
    src = _afhq_folder(tmp_path/'src'/'afhq', n=2)
    z = tmp_path/'afhq.zip'
    with zipfile.ZipFile(z, 'w') as zf:
        for f in sorted(src.rglob('*')):
            if f.is_file(): zf.write(f, f.relative_to(src.parent))
    root = download_afhq(cache=tmp_path/'cache', url=z.as_uri())
    assert root == tmp_path/'cache'/'afhq' and domain_names(root, 'val') == ['cat', 'dog', 'wild']
    assert len(find_images(root/'train'/'wild')) == 5 and not list((tmp_path/'cache').glob('.*extracting'))
    assert data_root('afhq', cache=tmp_path/'cache') == root
    assert download_afhq(cache=tmp_path/'cache', url='file:///does/not/exist.zip') == root   # cached: no download
    # v2 layout (test/ instead of val/), resumed from a partial download
    z2 = tmp_path/'v2.zip'
    with zipfile.ZipFile(z2, 'w') as zf:
        for f in sorted(src.rglob('*')):
            if f.is_file(): zf.write(f, 'afhq_v2/' + str(f.relative_to(src)).replace('val/', 'test/', 1))
    part = tmp_path/'c2'/'afhq_v2.zip.part'; part.parent.mkdir(); part.write_bytes(z2.read_bytes()[:100])
    root2 = download_dataset('afhq_v2', cache=tmp_path/'c2', url=z2.as_uri(), keep_zip=False)
    assert domain_names(root2, 'val') == ['cat', 'dog', 'wild'] and not (tmp_path/'c2'/'afhq_v2.zip').exists()


def test_download_errors(tmp_path):
    with pytest.raises(DownloadError, match='offline'): download_afhq(cache=tmp_path, url='file:///nope/afhq.zip')
    with pytest.raises(DataError, match='stargan_v2 data download afhq'): data_root('afhq', cache=tmp_path)
    (tmp_path/'celeba_hq.zip').write_bytes(b'not a zip')
    with pytest.raises(DownloadError, match='only 9 bytes.*Delete it'): download_dataset('celeba_hq', cache=tmp_path)   # size floor of the official zip
    with pytest.raises(DataError, match='not a valid zip'): download_dataset('celeba_hq', cache=tmp_path, url='file:///mirror/celeba_hq.zip')
    with pytest.raises(ValueError, match='afhq_v2'): download_dataset('lsun', cache=tmp_path)
    evil = tmp_path/'evil'/'afhq.zip'; evil.parent.mkdir()
    with zipfile.ZipFile(evil, 'w') as zf: zf.writestr('../../outside.txt', 'x')
    with pytest.raises(DataError, match='outside'): download_afhq(cache=tmp_path/'evil', url='file:///mirror/afhq.zip')


def test_bad_layouts_get_clear_errors(tmp_path):
    with pytest.raises(DataError, match='does not exist'): domain_names(tmp_path/'missing')
    (tmp_path/'train'/'a').mkdir(parents=True)
    with pytest.raises(DataError, match="no 'val' split"): domain_names(tmp_path, 'val')
    with pytest.raises(DataError, match='single domain'): domain_names(tmp_path)
    (tmp_path/'train'/'b').mkdir()
    Image.new('RGB', (8, 8)).save(tmp_path/'train'/'b'/'x.png')
    with pytest.raises(DataError, match=r"train/a has no images"): DomainFolder(tmp_path)
    root = _afhq_folder(tmp_path/'parent'/'ok', n=3)
    with pytest.raises(DataError, match='num_domains=2'): get_dls(Config.tiny(num_domains=2), root=root, device='cpu')
    with pytest.raises(DataError, match=f"Did you mean {root}"): domain_names(tmp_path/'parent')     # pointed at the parent
    (root/'val'/'zebra').mkdir(); Image.new('RGB', (40, 40)).save(root/'val'/'zebra'/'z.png')
    with pytest.raises(DataError, match='make them the same'): get_dls(Config.tiny(), root=root, device='cpu')


def test_hidden_and_unsupported_files(tmp_path):
    root = _afhq_folder(tmp_path, n=3)
    ck = root/'train'/'cat'/'.ipynb_checkpoints'; ck.mkdir()
    Image.new('RGB', (40, 40)).save(ck/'0.jpg'); Image.new('RGB', (40, 40)).save(root/'train'/'cat'/'._0.jpg')
    Image.new('RGB', (40, 40)).save(root/'train'/'dog'/'photo.webp')
    assert len(find_images(root/'train'/'cat')) == 6
    rep = check_dataset(root)
    assert rep.counts['train']['cat'] == 6 and [p for p in rep.problems if 'photo.webp' in p and 'ignored' in p]


def test_corrupt_and_small_images(tmp_path):
    root = _afhq_folder(tmp_path, n=3, size=12)
    bad = root/'train'/'cat'/'1.jpg'; bad.write_bytes(b'\xff\xd8 truncated')
    ds = DomainFolder(root, 'train', img_size=16)
    i = ds.files.index(bad)
    with pytest.warns(UserWarning) as w:
        im = ds.load(i)
    msgs = [str(x.message) for x in w]
    assert any('Skipping unreadable image' in m and '1.jpg' in m for m in msgs)
    assert any('smaller than the training size' in m for m in msgs) and im.size == (12, 12)
    with warnings.catch_warnings(record=True) as w2:
        warnings.simplefilter('always')
        for k in range(len(ds)): ds.load(k)
    assert not [x for x in w2 if 'smaller' in str(x.message)]          # the small-image warning is shown once
    with pytest.raises(BadImageError, match='1.jpg'): DomainFolder(root, 'train', img_size=16, on_bad='error').load(i)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        b = get_dls(Config.tiny(), root=root, device='cpu', num_workers=0).one_batch()
    assert b[0].shape == (4, 3, 16, 16)
    rep = check_dataset(root, img_size=16)
    assert not rep.ok and any('1.jpg' in p and 'unreadable' in p for p in rep.problems)
    assert any('smaller than the training size' in p for p in rep.problems)
    assert rep.counts['train']['cat'] == 6 and rep.domains == ['cat', 'dog', 'wild']


def test_cli_data(tmp_path, capsys):
    assert cli_data(['shapes', '--out', str(tmp_path/'s'), '--n-train', '2', '--n-val', '1', '--size', '32']) == 0
    assert Image.open(tmp_path/'s'/'val'/'triangle'/'0000.png').size == (32, 32)
    assert cli_data(['check', str(tmp_path/'s')]) == 0
    out = capsys.readouterr().out
    assert 'domains (3): circle, square, triangle' in out and 'train: circle=2' in out and 'no problems' in out
    (tmp_path/'s'/'val'/'circle'/'0000.png').write_bytes(b'junk')
    assert cli_data(['check', str(tmp_path/'s')]) == 1
    assert 'unreadable image' in capsys.readouterr().out
    assert cli_data(['download', 'afhq', '--cache', str(tmp_path/'c'), '--url', 'file:///nope.zip']) == 1
    assert 'offline' in capsys.readouterr().err
    from stargan_v2.cli import main
    assert main(['data', 'check', str(tmp_path/'nothing')]) == 1
