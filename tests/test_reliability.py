"""Issue #12, 'Nothing lost, every failure explained': one test per case of the reliability campaign.

Bad images, bad checkpoints, bad settings, interrupted/concurrent runs and misuse of the CLI: each must give a clear
message or a documented conversion and lose nothing. Run `pytest -m reliability` (most are fast; the slow ones are
bounded in time)."""
import os, struct, subprocess, sys, textwrap, time, warnings, zlib
from pathlib import Path
import numpy as np
import pytest
import torch
from PIL import Image

pytestmark = pytest.mark.reliability
REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------- images
def _png_header_only(path, w, h):
    "A PNG whose header claims w×h pixels (a decompression bomb as far as the header goes), with a tiny body."
    chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    ihdr = struct.pack('>IIBBBBB', w, h, 1, 0, 0, 0, 0)
    Path(path).write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', zlib.compress(b'\0' * 64)) + chunk(b'IEND', b''))


def _truncated_png(path, size=16):
    im = Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)); im.save(path)
    b = Path(path).read_bytes(); Path(path).write_bytes(b[:len(b) // 2])


def _zoo(folder):
    "One file of every kind the reader handles on purpose; returns {name: expected RGB pixel (0,0) or None if skipped}."
    f = Path(folder); f.mkdir(parents=True, exist_ok=True)
    Image.new('RGB', (8, 8), (10, 20, 30)).save(f/'rgb.png')
    Image.new('RGBA', (8, 8), (255, 0, 0, 0)).save(f/'rgba.png')                       # transparent red -> white
    Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(f/'g16.png')                  # I;16 white
    Image.fromarray(np.full((8, 8), 257 * 40, np.uint16)).save(f/'g16dark.png')           # I;16 dark gray, not white
    pal = Image.new('P', (8, 8), 1); pal.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762); pal.save(f/'pal.png')
    Image.new('CMYK', (8, 8), (0, 0, 0, 0)).save(f/'cmyk.jpg')
    Image.new('LA', (8, 8), (0, 0)).save(f/'la.png')                                      # transparent black -> white
    Image.new('L', (8, 8), 77).save(f/'gray.png')
    _truncated_png(f/'trunc.png', 8)
    _png_header_only(f/'bomb.png', 20000, 20000)
    (f/'html.jpg').write_bytes(b'<!DOCTYPE html><html>error</html>')
    return {'rgb.png': (10, 20, 30), 'rgba.png': (255, 255, 255), 'g16.png': (255, 255, 255), 'g16dark.png': (40, 40, 40),
            'pal.png': (0, 200, 0), 'cmyk.jpg': (255, 255, 255), 'la.png': (255, 255, 255), 'gray.png': (77, 77, 77),
            'trunc.png': None, 'bomb.png': None, 'html.jpg': None}


def test_read_image_handles_every_kind_on_purpose(tmp_path):
    from stargan_v2.data import read_image, BadImageError
    for name, px in _zoo(tmp_path).items():
        if px is None:
            with pytest.raises(BadImageError, match=name.replace('.', r'\.')): read_image(tmp_path/name)
        else:
            im, note = read_image(tmp_path/name)
            assert im.mode == 'RGB' and im.getpixel((0, 0)) == px, name
            assert (note == '') == (name == 'rgb.png'), (name, note)


def test_bomb_and_truncated_messages(tmp_path):
    from stargan_v2.data import read_image, BadImageError
    _zoo(tmp_path)
    with pytest.raises(BadImageError, match='too large.*Resize it'): read_image(tmp_path/'bomb.png')
    with pytest.raises(BadImageError, match='truncated'): read_image(tmp_path/'trunc.png')


def _dataset(root, zoo=True):
    "root/{train,val}/{a,b}: RGB images, the zoo in train/a and val/a, and a hidden folder with a visible-looking image."
    for s in ('train', 'val'):
        for d, col in (('a', (200, 0, 0)), ('b', (0, 0, 200))):
            (root/s/d).mkdir(parents=True, exist_ok=True)
            for k in range(2): Image.new('RGB', (8, 8), col).save(root/s/d/f'{k}.png')
        if zoo: _zoo(root/s/'a')
        (root/s/'a'/'.ipynb_checkpoints').mkdir(exist_ok=True)
        Image.new('RGB', (8, 8), (0, 255, 0)).save(root/s/'a'/'.ipynb_checkpoints'/'0-checkpoint.png')
        Image.new('RGB', (8, 8), (0, 255, 0)).save(root/s/'a'/'.hidden.png')
        (root/s/'.trash').mkdir(exist_ok=True); Image.new('RGB', (8, 8)).save(root/s/'.trash'/'x.png')   # not a domain


def test_training_and_evaluation_read_the_same_files_and_pixels(tmp_path):
    "Issue #11's 'one image reader' bullet: RGBA, 16-bit, hidden folders... identical through training and evaluation."
    from stargan_v2.data import DomainFolder
    from stargan_v2.metrics import list_images, load_images
    _dataset(tmp_path)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        ds = DomainFolder(tmp_path, 'val', img_size=8, cache=False)
        assert ds.domains == ['a', 'b']
        files_eval = list_images(tmp_path/'val'/'a')
        assert ds.files[:ds.counts[0]] == files_eval                          # same listing (hidden ones skipped)
        assert not any('.ipynb_checkpoints' in str(f) or f.name.startswith('.') for f in files_eval)
        train_px = {ds.files[j].name: np.asarray(ds.load(j)) for j in range(ds.counts[0]) if j not in ds.bad}
        ev = load_images(files_eval, 8)
    skipped = {'trunc.png', 'bomb.png', 'html.jpg'}
    assert len(ev) == len(files_eval) - len(skipped)                          # skipped, not crashed
    good = [f.name for f in files_eval if f.name not in skipped]
    for name, x in zip(good, ev): np.testing.assert_array_equal(train_px[name], x.permute(1, 2, 0).numpy(), err_msg=name)
    assert {ds.files[j].name for j in ds.bad} == skipped
    msgs = ' '.join(str(x.message) for x in w)
    assert all(s in msgs for s in skipped)                                     # each skip is named in a warning


def test_evaluation_split_loader_skips_like_training(tmp_path):
    from stargan_v2.evaluate import load_split
    _dataset(tmp_path)
    with pytest.warns(UserWarning, match='bomb.png'):
        x = load_split(tmp_path, ['a', 'b'], 8)
    assert x['a'].shape[0] == 2 + 8 and x['b'].shape[0] == 2             # 11 zoo files - 3 refused + 2 RGB
    assert float(x['a'].min()) >= -1 and float(x['a'].max()) <= 1


def test_training_batches_survive_bad_files(tmp_path):
    "Decompression-bomb-sized, truncated and HTML files do not crash training: they are skipped with a warning."
    from stargan_v2.core import Config
    from stargan_v2.data import get_dls
    _dataset(tmp_path)
    cfg = Config.tiny(num_domains=2, img_size=8, batch_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        dls = get_dls(cfg, root=tmp_path, device='cpu', num_workers=0)
        for _ in range(3): b = dls.one_batch()
    assert torch.isfinite(b[0]).all() and b[0].shape == (16, 3, 8, 8)


def test_data_check_reports_what_training_does(tmp_path):
    from stargan_v2.data import check_dataset, cli_data
    _dataset(tmp_path)
    rep = check_dataset(tmp_path)
    assert sorted(p.name for p in rep.skipped) == sorted(['trunc.png', 'bomb.png', 'html.jpg'] * 2)
    conv = {k: sorted({p.name for p in v}) for k, v in rep.conversions.items()}
    assert conv['16-bit grayscale scaled to 8 bits (÷257)'] == ['g16.png', 'g16dark.png']
    assert conv['transparency composited over white'] == ['la.png', 'rgba.png']
    assert 'cmyk.jpg' in conv['CMYK converted to RGB (no colour profile)'] and 'pal.png' in conv['palette converted to RGB']
    assert rep.counts['train'] == {'a': 13, 'b': 2}                          # hidden files and the .trash folder not counted
    text = str(rep)
    assert 'too large' in text and 'skipped by training and evaluation' in text and 'hidden image' in text
    assert cli_data(['check', str(tmp_path)]) == 1


def test_explorer_upload_uses_the_same_reader(tmp_path):
    import io
    from stargan_v2.explorer import image_from_bytes, from_png
    buf = io.BytesIO(); Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(buf, format='PNG')
    assert from_png(buf.getvalue()).min() == 255
    buf = io.BytesIO(); Image.new('RGBA', (8, 8), (0, 0, 0, 0)).save(buf, format='PNG')
    assert from_png(buf.getvalue()).min() == 255
    buf = io.BytesIO(); Image.new('LA', (8, 8), (0, 0)).save(buf, format='PNG')
    assert float(image_from_bytes(buf.getvalue(), 4).min()) == 1.0            # an upload: alpha over white too
