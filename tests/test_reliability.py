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
    cfg = Config.tiny(num_domains=2, img_size=16, batch_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        dls = get_dls(cfg, root=tmp_path, device='cpu', num_workers=0)
        for _ in range(3): b = dls.one_batch()
    assert torch.isfinite(b[0]).all() and b[0].shape == (16, 3, 16, 16)


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


# ---------------------------------------------------------------------------------------------------- checkpoint files
def _files(tmp_path):
    torch.save({'generator': {'w': torch.randn(64, 64)}}, tmp_path/'good.ckpt')
    b = (tmp_path/'good.ckpt').read_bytes()
    (tmp_path/'page.ckpt').write_text('<!DOCTYPE html>\n<html><head><title>Dropbox - Error</title></head><body>429</body></html>')
    Image.new('RGB', (4, 4)).save(tmp_path/'img.ckpt', format='PNG')
    (tmp_path/'cut.ckpt').write_bytes(b[:len(b) // 2]); (tmp_path/'head.ckpt').write_bytes(b[:100])
    (tmp_path/'empty.ckpt').write_bytes(b''); (tmp_path/'noise.ckpt').write_bytes(np.random.default_rng(0).bytes(4000))
    torch.save({'w': torch.ones(3)}, tmp_path/'legacy.ckpt', _use_new_zipfile_serialization=False)
    lb = (tmp_path/'legacy.ckpt').read_bytes(); (tmp_path/'lcut.ckpt').write_bytes(lb[:-20])
    class Evil:
        def __reduce__(self): return (os.system, (f'touch {tmp_path}/PWNED',))
    torch.save({'generator': Evil()}, tmp_path/'evil.ckpt')


@pytest.mark.parametrize('name,kind,says', [
    ('page', 'NotACheckpointError', 'HTML page'), ('img', 'NotACheckpointError', 'PNG image'),
    ('noise', 'NotACheckpointError', 'not a checkpoint'), ('cut', 'TruncatedCheckpointError', 'previous checkpoint'),
    ('head', 'TruncatedCheckpointError', 'truncated'), ('empty', 'TruncatedCheckpointError', 'empty'),
    ('lcut', 'TruncatedCheckpointError', 'truncated'), ('evil', 'UnsafeCheckpointError', 'refused to load')])
def test_broken_checkpoints_are_told_apart_from_unsafe_ones(tmp_path, name, kind, says):
    from stargan_v2 import checkpoints as C
    _files(tmp_path)
    with pytest.raises(C.CheckpointError) as e: C.safe_load(tmp_path/f'{name}.ckpt')
    msg = str(e.value)
    assert type(e.value).__name__ == kind and says in msg and f'{name}.ckpt' in msg      # the file is named
    assert 'weights_only' not in msg and 'weights_only=False' not in msg                 # PyTorch's advice is never quoted
    assert len(msg.splitlines()) == 1
    assert not (tmp_path/'PWNED').exists()
    assert isinstance(e.value, C.CheckpointIntegrityError) == (kind != 'UnsafeCheckpointError')
    assert C.safe_load(tmp_path/'good.ckpt')['generator']['w'].shape == (64, 64)
    assert C.safe_load(tmp_path/'legacy.ckpt')['w'].sum() == 3


def _tiny_run_dir(tmp_path, nan=False):
    from dataclasses import asdict
    import json
    from stargan_v2.core import Config
    from stargan_v2.models import build_nets, ema_copy
    from stargan_v2.checkpoints import save_nets
    cfg = Config.tiny()
    nets = ema_copy(build_nets(cfg))
    if nan:
        with torch.no_grad(): next(nets.generator.parameters())[..., 0] = float('nan')
    run = tmp_path/'run'; (run/'checkpoints').mkdir(parents=True)
    (run/'config.json').write_text(json.dumps(asdict(cfg)))
    save_nets(nets, run/'checkpoints'/'000010_nets_ema.ckpt')
    return run


def test_nan_weights_are_refused_for_sampling_and_evaluation(tmp_path):
    from stargan_v2.checkpoints import load_nets_ema, NonFiniteCheckpointError, load_translator
    with pytest.raises(NonFiniteCheckpointError, match='000010_nets_ema.ckpt has non-finite'): load_nets_ema(_tiny_run_dir(tmp_path, nan=True))
    with pytest.raises(NonFiniteCheckpointError): load_translator(tmp_path/'run')
    load_nets_ema(_tiny_run_dir(tmp_path/'ok'))                                            # finite: fine


def test_optimiser_or_state_file_passed_as_networks(tmp_path):
    from stargan_v2.checkpoints import load_nets, save_optims, CheckpointMismatch
    from stargan_v2.core import Config
    from stargan_v2.models import build_nets
    nets = build_nets(Config.tiny())
    save_optims({'generator': torch.optim.Adam(nets.generator.parameters())}, tmp_path/'000010_optims.ckpt')
    with pytest.raises(CheckpointMismatch, match='optimiser-state file'): load_nets(tmp_path/'000010_optims.ckpt', nets)
    torch.save({'config': {}, 'iter': 3, 'callbacks': {}}, tmp_path/'000010_state.ckpt')
    with pytest.raises(CheckpointMismatch, match='resume-state file'): load_nets(tmp_path/'000010_state.ckpt', nets)


# ---------------------------------------------------------------------------------------------------- settings
@pytest.mark.parametrize('kw,says', [(dict(batch_size=0), 'batch_size=0 (must be an integer ≥ 1)'),
                                     (dict(save_every=0), 'save_every=0 (must be an integer ≥ 1)'),
                                     (dict(img_size=48), 'img_size=48 (must be a power of two'),
                                     (dict(lr=-1e-4), 'lr=-0.0001 (must be a finite number > 0)'),
                                     (dict(lr=float('inf')), 'lr=inf'), (dict(total_iters=0), 'total_iters=0'),
                                     (dict(sample_every=-1), 'sample_every=-1'), (dict(print_every=0), 'print_every=0'),
                                     (dict(beta2=1.0), 'beta2=1.0 (must be a number in [0, 1))'), (dict(num_workers=-1), 'num_workers=-1'),
                                     (dict(val_batch_size=0), 'val_batch_size=0'), (dict(ema_beta=2), 'ema_beta=2')])
def test_config_validated_at_the_boundary(kw, says):
    from stargan_v2.core import Config, ConfigError
    with pytest.raises(ConfigError) as e: Config.tiny(**kw)
    assert says in str(e.value)
    with pytest.raises(ConfigError): Config.shapes().replace(**kw)
    from dataclasses import asdict
    with pytest.raises(ConfigError): Config.from_dict({**asdict(Config.tiny()), **kw})


def test_missing_gpu_is_a_config_error():
    from stargan_v2.core import default_device, ConfigError
    if torch.cuda.is_available(): pytest.skip('this machine has a GPU')
    with pytest.raises(ConfigError, match='no CUDA GPU'): default_device('cuda')


# ---------------------------------------------------------------------------------------------------- downloads, saves
def test_download_refuses_html_and_short_files(tmp_path):
    from stargan_v2.core import download_url, DownloadError
    page = tmp_path/'quota.html'; page.write_text('<html><body>This account is over its download quota</body></html>')
    with pytest.raises(DownloadError, match='HTML page'): download_url(page.as_uri(), tmp_path/'x.ckpt', progress=False)
    assert not (tmp_path/'x.ckpt').exists() and not (tmp_path/'x.ckpt.part').exists()
    blob = tmp_path/'blob'; blob.write_bytes(b'\0' * 500)
    with pytest.raises(DownloadError, match='at least 1,000'): download_url(blob.as_uri(), tmp_path/'y.ckpt', min_size=1000, progress=False)
    with pytest.raises(DownloadError, match='expected 501'): download_url(blob.as_uri(), tmp_path/'z.ckpt', size=501, progress=False)
    assert download_url(blob.as_uri(), tmp_path/'w.ckpt', size=500, progress=False).stat().st_size == 500


def test_every_published_file_carries_a_check():
    from stargan_v2.pretrained import PRETRAINED, PRETRAINED_CHECKS
    from stargan_v2.metrics import INCEPTION_WEIGHTS
    from stargan_v2.data import DATASETS, DATASET_MIN_SIZE
    from stargan_v2.fan import WING_MIN_SIZE
    assert set(PRETRAINED) == set(PRETRAINED_CHECKS) and all(PRETRAINED_CHECKS[k] for k in PRETRAINED)
    assert all(sha for _, sha in INCEPTION_WEIGHTS.values()) and DATASETS and DATASET_MIN_SIZE >= 10**8 and WING_MIN_SIZE > 10**7
    assert all(u.startswith('https://') for u, _ in PRETRAINED.values())                   # the real URLs are kept


def test_atomic_save_full_disk_and_orphans(tmp_path, monkeypatch):
    from stargan_v2 import core
    core.atomic_save({'w': torch.ones(2)}, tmp_path/'a.ckpt')
    def full(obj, f, *a, **k): f.write(b'partial'); raise RuntimeError('[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing file data/0: file write failed')
    monkeypatch.setattr(core.torch, 'save', full)
    with pytest.raises(core.DiskFullError, match='No space left.*a.ckpt.*intact'): core.atomic_save({'w': torch.zeros(2)}, tmp_path/'a.ckpt')
    monkeypatch.undo()
    assert torch.load(tmp_path/'a.ckpt', weights_only=True)['w'].sum() == 2                 # the old file is intact
    assert [f.name for f in tmp_path.iterdir()] == ['a.ckpt']                                # no temp file left
    dead = int(subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True).stdout)
    (tmp_path/f'.b.ckpt.tmp{dead}').write_bytes(b'x')
    assert [f.name for f in core.remove_orphan_temps(tmp_path)] == [f'.b.ckpt.tmp{dead}']


def test_links_are_treated_alike_everywhere(tmp_path):
    "A broken link is invisible to training, evaluation and data check alike; a good link is an ordinary file."
    from stargan_v2.data import DomainFolder, check_dataset
    from stargan_v2.metrics import list_images
    _dataset(tmp_path, zoo=False)
    d = tmp_path/'train'/'a'
    (d/'broken.png').symlink_to(tmp_path/'nowhere.png')
    (d/'alias.png').symlink_to(d/'0.png')
    names = lambda fs: sorted(f.name for f in fs)
    ds = DomainFolder(tmp_path, 'train', 8)
    assert names(ds.files[:ds.counts[0]]) == names(list_images(d)) == ['0.png', '1.png', 'alias.png']
    rep = check_dataset(tmp_path)
    assert rep.counts['train']['a'] == 3 and not rep.skipped


def test_run_lock_pidfile_fallback(tmp_path):
    "Where flock is missing (Windows, some network mounts): a PID file; a live owner blocks, a dead one does not."
    from stargan_v2.core import run_lock, FolderLockedError
    a = run_lock(tmp_path); a._enter_pidfile()
    with pytest.raises(FolderLockedError, match=f'PID {os.getpid()}'): run_lock(tmp_path)._enter_pidfile()
    a.__exit__(None, None, None); assert not (tmp_path/'.lock').exists()
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True).stdout.strip()
    (tmp_path/'.lock').write_text(dead)                                        # left by a killed run
    b = run_lock(tmp_path); b._enter_pidfile()
    assert (tmp_path/'.lock').read_text() == str(os.getpid()); b.__exit__(None, None, None)
