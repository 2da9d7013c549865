"Shapes dataset: deterministic generation, the committed copy, and the accuracy of `measure_shapes` (the course's ruler)."
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from PIL import Image, ImageFilter
from stargan_v2 import shapes as S
from stargan_v2.shapes import make_shapes, measure_shapes, hue_dist, shapes_path, SHAPE_DOMAINS, render_shape, sample_shape_params, SIZE_RANGE, PATTERNS, _DOMAIN_STYLE

REPO_SHAPES = Path(S.__file__).resolve().parents[1]/'lessons_data'/'shapes'


def _files(root): return sorted(p.relative_to(root) for p in Path(root).rglob('*') if p.is_file())


def test_regeneration_is_byte_identical(tmp_path):
    a = make_shapes(tmp_path/'a', n_train=4, n_val=2)
    b = make_shapes(tmp_path/'b', n_train=4, n_val=2)
    fa = _files(tmp_path/'a')
    assert fa == _files(tmp_path/'b') and len(fa) == 3*6 + 1
    for f in fa: assert (tmp_path/'a'/f).read_bytes() == (tmp_path/'b'/f).read_bytes(), f
    pd.testing.assert_frame_equal(a, b)
    c = make_shapes(tmp_path/'c', n_train=4, n_val=2, seed=1)
    assert (tmp_path/'a'/fa[0]).read_bytes() != (tmp_path/'c'/fa[0]).read_bytes()


def test_images_do_not_depend_on_other_domains_or_counts(tmp_path):
    make_shapes(tmp_path/'a', n_train=3, n_val=1)
    make_shapes(tmp_path/'b', n_train=5, n_val=2, domains=('square', 'circle', 'hexagon'))
    for f in ('train/circle/0002.png', 'val/square/0000.png'):
        assert (tmp_path/'a'/f).read_bytes() == (tmp_path/'b'/f).read_bytes()


def test_committed_copy_matches_the_generator(tmp_path):
    "The committed lessons_data/shapes is what make_shapes(seed=0) writes (pixels and metadata), checked on a sample."
    assert REPO_SHAPES.is_dir(), "lessons_data/shapes is missing; regenerate it with `stargan_v2 data shapes --out lessons_data/shapes`"
    md = pd.read_csv(REPO_SHAPES/'metadata.csv')
    assert len(md) == 3*600 and set(md.domain) == set(SHAPE_DOMAINS)
    assert md.groupby(['split', 'domain']).size().to_dict() == {(s, d): n for s, n in (('train', 500), ('val', 100)) for d in SHAPE_DOMAINS}
    new = make_shapes(tmp_path, n_train=3, n_val=2)   # per-image seeds: the first images equal the committed ones
    for _, r in new.iterrows():
        got = np.asarray(Image.open(tmp_path/r.path)); ref = np.asarray(Image.open(REPO_SHAPES/r.path))
        assert np.array_equal(got, ref), r.path
        row = md[md.path == r.path].iloc[0]
        for k in ('cx', 'cy', 'size', 'rotation', 'fill_hue', 'bg_hue', 'pattern_angle'): assert abs(row[k] - r[k]) < 1e-3, (r.path, k)
        assert row.pattern == r.pattern and row.domain == r.domain
    total = sum(p.stat().st_size for p in REPO_SHAPES.rglob('*') if p.is_file())
    assert total < 4e6, f"lessons_data/shapes is {total/1e6:.1f} MB; keep it a few MB"


def test_metadata_has_every_parameter():
    md = pd.read_csv(REPO_SHAPES/'metadata.csv')
    p = sample_shape_params(np.random.default_rng(0), 'circle')
    assert set(p) <= set(md.columns) and {'path', 'split', 'label'} <= set(md.columns)
    lo, hi = SIZE_RANGE
    assert md['size'].between(lo, hi).all()
    m = 0.877 * md['size']   # a triangle's circumradius: no shape may touch the 64-px frame, whatever its rotation
    assert (md.cx - m > 0.5).all() and (md.cx + m < 63.5).all() and (md.cy - m > 0.5).all() and (md.cy + m < 63.5).all()
    # content is drawn from the same distribution in every domain
    means = md.groupby('domain')[['cx', 'cy', 'size']].mean()
    assert (means.max() - means.min()).max() < 1.0
    # style: the pattern mix is domain-specific; the fill hue is uniform in every domain (colour must not give the shape away)
    mix = pd.crosstab(md.domain, md.pattern, normalize='index')[list(PATTERNS)]
    for d in SHAPE_DOMAINS: assert np.allclose(mix.loc[d].values, _DOMAIN_STYLE[d], atol=0.06), (d, mix.loc[d].values)
    for d, h in md.groupby('domain').fill_hue:
        counts = np.histogram(h, bins=6, range=(0, 360))[0] / len(h)
        assert np.abs(counts - 1/6).max() < 0.06, (d, counts)


def test_unknown_domain_is_refused(tmp_path):
    with pytest.raises(ValueError, match='Unknown shape domain'): make_shapes(tmp_path, 1, 1, domains=('circle', 'blob'))


def _val(size=64, blur=0., noise=0., seed=0):
    md = pd.read_csv(REPO_SHAPES/'metadata.csv')
    md = md[md.split == 'val'].reset_index(drop=True)
    rng, ims = np.random.default_rng(seed), []
    for p in md.path:
        im = Image.open(REPO_SHAPES/p).convert('RGB')
        if size != 64: im = im.resize((size, size), Image.BILINEAR)
        if blur: im = im.filter(ImageFilter.GaussianBlur(blur))
        a = np.asarray(im) / 255. + noise * rng.standard_normal((size, size, 3))
        ims.append((np.clip(a, 0, 1) * 255).round().astype(np.uint8))
    return md, ims


def _scores(md, r):
    return dict(acc=(r.domain == md.domain).mean(), pos=np.hypot(r.cx - md.cx, r.cy - md.cy).mean(),
                hue=np.nanmean(hue_dist(r.fill_hue, md.fill_hue)), size=np.abs(r['size'] - md['size']).mean(),
                pattern=(r.pattern == md.pattern).mean(), bg=np.nanmean(hue_dist(r.bg_hue, md.bg_hue)))


@pytest.mark.parametrize('size', [64, 32])
def test_measure_shapes_on_val(size):
    md, ims = _val(size)
    s = _scores(md, measure_shapes(ims))
    assert s['acc'] >= 0.99, s
    assert s['pos'] <= 1.0, s
    assert s['hue'] <= 5.0, s
    assert s['size'] <= 1.0 and s['bg'] <= 5.0 and s['pattern'] >= 0.85, s


def test_measure_shapes_rotation():
    md, ims = _val(64)
    r = measure_shapes(ims[100:])
    md = md[100:].reset_index(drop=True)
    period = md.domain.map({'square': 90, 'triangle': 120})
    err = [hue_dist(a * 360 / p, b * 360 / p) * p / 360 for a, b, p in zip(r.rotation, md.rotation, period)]
    assert np.mean(err) < 2, np.mean(err)
    assert measure_shapes(ims[:3]).rotation.isna().all()    # circles have no rotation


def test_measure_shapes_survives_blur_and_noise():
    md, ims = _val(32, blur=0.35, noise=0.05)
    s = _scores(md, measure_shapes(ims))
    assert s['acc'] >= 0.95 and s['pos'] <= 1.0 and s['hue'] <= 5.0, s


def test_measure_shapes_tensor_input_matches_arrays():
    md, ims = _val(64)
    ims = ims[::40]
    x = torch.stack([torch.from_numpy(a).permute(2, 0, 1).float() / 255 * 2 - 1 for a in ims])
    a, b = measure_shapes(x), measure_shapes([Image.fromarray(i) for i in ims])
    assert list(a.domain) == list(b.domain)
    assert np.allclose(a.cx, b.cx, atol=1e-4) and np.allclose(a.fill_hue, b.fill_hue, atol=1e-3)
    assert {'domain', 'cx', 'cy', 'size', 'rotation', 'fill_hue', 'pattern', 'bg_hue', 'iou_circle', 'iou_triangle'} <= set(a.columns)
    ious = a[[f'iou_{d}' for d in SHAPE_DOMAINS]].to_numpy()
    assert (np.array(SHAPE_DOMAINS)[ious.argmax(1)] == a.domain).all() and np.allclose(ious.max(1), a.shape_iou)
    with pytest.raises(ValueError, match=r'\(B,3,H,W\)'): measure_shapes(torch.zeros(2, 1, 8, 8))


def test_measure_shapes_blank_image():
    r = measure_shapes([np.full((32, 32, 3), 200, np.uint8)])
    assert r.domain[0] is None and np.isnan(r.cx[0])


def test_more_domains_are_measurable(tmp_path):
    md = make_shapes(tmp_path, n_train=0, n_val=15, domains=('circle', 'square', 'triangle', 'pentagon', 'hexagon'))
    r = measure_shapes([Image.open(tmp_path/p) for p in md.path], domains=('circle', 'square', 'triangle', 'pentagon', 'hexagon'))
    assert (r.domain == md.domain).mean() >= 0.9


def test_shapes_path_generates_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv('STARGAN_V2_CACHE', str(tmp_path))
    calls = []
    monkeypatch.setattr(S, 'make_shapes', lambda root, seed=0, **kw: calls.append((root, seed)) or (Path(root)/'metadata.csv').write_text('x'))
    assert shapes_path() == REPO_SHAPES and not calls          # in a clone: the committed copy
    p = shapes_path(seed=3)
    assert p == tmp_path/'shapes_seed3' and calls == [(p, 3)]
    assert shapes_path(seed=3) == p and len(calls) == 1          # generated once
