"Lesson 12b (mask vector, joint training): labels and masks, the known-block loss, exact resume, foreign checkpoints, NaN guard, the wrong mask and the two-pass translator."
import colorsys
import numpy as np, pandas as pd
import pytest, torch
import torch.nn.functional as F
from fastai.callback.core import Callback, CancelFitException
from stargan_v2.checkpoints import safe_load
from stargan_v2.callbacks import ConfigMismatch, latest_state
from stargan_v2.data import data_root
from stargan_v2.learner import TrainingStopped
from stargan_v2.translator import Translator, IdentityTranslator
from stargan_v2.v1 import V1Config, train_v1, v1_d_loss, v1_g_loss, make_v1_optims
from stargan_v2.multidata import (MaskConfig, COLOURS, colour_class, split_train, two_datasets, label_dim, cls_slice, unified_label,
                                  KnownLabels, build_joint, joint_iteration, JointLoader, train_joint, load_joint, load_translator,
                                  MaskTranslator, TwoPassTranslator, reference_colour, colour_scores)
from helpers import assert_equal, ckpt_files, Poison

TINY = MaskConfig.tiny(total_iters=6, save_every=3, print_every=3, sample_every=3)
NAMES = ('form', 'colour')

@pytest.fixture(scope='module')
def data(): return two_datasets(TINY)

def _run(out, cfg=TINY, **kw): return train_joint(cfg, out, device='cpu', verbose=False, progress=False, **kw)

class _StopAt(Callback):
    order = 60
    def __init__(self, n): self.n = n
    def after_batch(self):
        if self.learn.train_iter == self.n: raise CancelFitException()

def test_colour_bins():
    assert colour_class([359.9, 0, 29.99, 30, 89.9, 90, 150, 210, 270, 329.9, 330]).tolist() == [0, 0, 0, 1, 1, 2, 3, 4, 5, 5, 0]

def test_split_and_labels_match_the_metadata(data):
    f, c = split_train(1500, 0.9, 0)
    assert (len(f), len(c)) == (1350, 150) and not set(f.tolist()) & set(c.tolist()) and sorted(f.tolist() + c.tolist()) == list(range(1500))
    assert not torch.equal(split_train(1500, 0.9, 1)[1], c)            # the seed matters
    meta = pd.read_csv(data_root('shapes')/'metadata.csv')
    tr = meta[meta.split == 'train'].sort_values('path').reset_index(drop=True)    # DomainFolder order: domain folders, then files
    (xf, af), (xc, yc) = data.sets['form'], data.sets['colour']
    assert torch.equal(af, F.one_hot(torch.tensor(tr.label.to_numpy()[f.numpy()]), 3).float())
    hue = tr.fill_hue.to_numpy()[c.numpy()]
    assert yc.tolist() == [int(((h + 30) % 360) // 60) for h in hue]   # independent of colour_class's formula
    assert set(yc.tolist()) == set(range(6)) and len(xc) == 150 and len(xf) == 1350

def test_unified_label_layout_and_masks():
    assert label_dim(NAMES) == 11 and label_dim(('colour',)) == 6 and label_dim(('form',)) == 3
    f = unified_label(torch.tensor([[0., 0, 1]]), 'form', NAMES)
    c = unified_label(torch.tensor([2]), 'colour', NAMES)
    assert f.tolist() == [[0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0]] and c.tolist() == [[0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]]
    w = unified_label(torch.tensor([2]), 'colour', NAMES, mask=(1, 0))
    assert w.tolist() == [[0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0]]                       # colour one-hot, form mask
    assert unified_label(torch.tensor([2]), 'colour', ('colour',)).tolist() == [[0, 0, 1, 0, 0, 0]]   # SNG: no mask
    assert unified_label(torch.tensor([1]), 'form', NAMES).tolist() == unified_label(torch.tensor([[0., 1, 0]]), 'form', NAMES).tolist()

@pytest.mark.parametrize('block,known', [('form', range(0, 3)), ('colour', range(3, 9))])
def test_loss_only_on_the_known_block(data, block, known):
    "A batch of one dataset gives D's other logits no gradient, in the D step and in the G step; the known-block loss is the plain v1 loss on those logits."
    torch.manual_seed(0)
    nets, cfg = build_joint(TINY), TINY
    x, y = data.sets[block][0][:6], data.sets[block][1][:6]
    view = KnownLabels(nets, cls_slice(NAMES, block))
    other = [i for i in range(9) if i not in known]
    for loss_fn in (lambda: v1_d_loss(view, cfg, x, y, unified_label(y.flip(0), block, NAMES))[0],
                    lambda: v1_g_loss(view, cfg, x, y, unified_label(y, block, NAMES), y.flip(0), unified_label(y.flip(0), block, NAMES))[0]):
        nets.zero_grad(); loss_fn().backward()
        g = nets.discriminator.conv2.weight.grad
        assert g[other].abs().sum() == 0 and g[list(known)].abs().sum() > 0
    logits = nets.discriminator(x)[1]
    want = (F.binary_cross_entropy_with_logits(logits[:, :3], y, reduction='sum') / len(x) if block == 'form'
            else F.cross_entropy(logits[:, 3:], y))
    got = v1_d_loss(view, cfg, x, y, unified_label(y, block, NAMES))[1]['loss_cls']
    assert got == pytest.approx(want.item(), rel=1e-5)

def test_joint_iteration_alternates_datasets(data):
    "Two D steps per iteration (form then colour), two G steps on the n_critic-th; a colour batch moves the colour logits."
    torch.manual_seed(0)
    nets = build_joint(TINY); opt = make_v1_optims(nets, TINY)
    b = {k: (v[0][:4], v[1][:4]) for k, v in data.sets.items()}
    steps = []
    opt['discriminator'].register_step_post_hook(lambda *a: steps.append('D')); opt['generator'].register_step_post_hook(lambda *a: steps.append('G'))
    log = joint_iteration(nets, opt, TINY, 0, b)
    assert steps == ['D', 'D'] and all(k.startswith('D/') for k in log)
    log = joint_iteration(nets, opt, TINY, 1, b)             # tiny n_critic = 2
    assert steps[2:] == ['D', 'G', 'D', 'G'] and {k.split('_')[0] for k in log} == {'D/form', 'D/colour', 'G/form', 'G/colour'}

def test_loader_is_a_function_of_the_rng(data):
    dl = JointLoader(data, 8)
    torch.manual_seed(3); a = list(dl)
    torch.manual_seed(3); b = list(dl)
    assert len(a) == 168 and all(torch.equal(u, v) for x, y in zip(a, b) for u, v in zip(x, y))
    col = torch.cat([t[3] for t in a])
    assert abs(np.bincount(col.numpy(), minlength=6) / len(col) - np.bincount(data.sets['colour'][1].numpy(), minlength=6) / 150).max() < 0.02

@pytest.mark.reliability
def test_joint_resume_is_bitwise_exact(tmp_path):
    _run(tmp_path/'straight')
    assert _run(tmp_path/'resumed', cbs=[_StopAt(4)]).train_iter == 4        # stops between G steps (n_critic=2)
    assert _run(tmp_path/'resumed', resume=True).train_iter == 6
    a, b = (ckpt_files(tmp_path/r, 6, ('nets', 'optims', 'state')) for r in ('straight', 'resumed'))
    assert_equal(a, b)

@pytest.mark.reliability
def test_joint_refuses_foreign_checkpoints(tmp_path):
    _run(tmp_path/'j', TINY.replace(total_iters=3))
    with pytest.raises(ConfigMismatch, match=r'datasets: checkpoint .form\+colour., now .colour.'):
        _run(tmp_path/'j', TINY.replace(datasets='colour'), resume=True)
    train_v1(V1Config.tiny(total_iters=2), tmp_path/'v1', device='cpu', verbose=False, progress=False)
    with pytest.raises(ConfigMismatch, match=r"made by method 'stargan_v1'"): _run(tmp_path/'v1', resume=True)
    with pytest.raises(ConfigMismatch, match=r"not 'stargan_v1_mask'"): load_joint(tmp_path/'v1')
    with pytest.raises(FileExistsError, match='resume'): _run(tmp_path/'j')

@pytest.mark.reliability
def test_joint_nan_guard(tmp_path):
    with pytest.raises(TrainingStopped, match=r'Non-finite loss at iteration 5: D/form_loss_real=nan.*last good checkpoint is iteration 3'):
        _run(tmp_path, cbs=[Poison(4)])
    assert latest_state(tmp_path).name == '000003_state.ckpt'

def test_run_layout_and_sng(tmp_path):
    learn = _run(tmp_path/'j')
    h = learn.loss_log.hist
    assert all(len(h[k]) == 6 for k in ('D/form_loss_cls', 'D/colour_loss_cls', 'G/form_loss_rec', 'G/colour_loss_cls'))
    assert (tmp_path/'j'/'samples'/'000006_domains.png').exists()
    cfg, tr = load_translator(tmp_path/'j')
    assert cfg == TINY and isinstance(tr, MaskTranslator) and tr.num_domains == 3 and not tr.reference_guided
    sng = _run(tmp_path/'s', TINY.replace(datasets='colour'))
    assert sng.model.generator.main[0].in_channels == 3 + 6 and sng.model.discriminator.conv2.out_channels == 6
    assert {k.split('_')[0] for k in sng.loss_log.hist if '/' in k} == {'D/colour', 'G/colour'}
    cs, ts = load_translator(tmp_path/'s')
    assert ts.num_domains == 6 and ts.domains == list(COLOURS)

def test_wrong_mask_and_two_pass(tmp_path, data):
    _run(tmp_path)
    cfg, G = load_joint(tmp_path)
    x, xr, yr = data.sets['form'][0][:4], data.sets['colour'][0][:4], data.sets['colour'][1][:4]
    lab = lambda y, block, mask=None: unified_label(torch.as_tensor(y).expand(4) if torch.as_tensor(y).ndim == 0 else y, block, NAMES, mask)
    wrong = MaskTranslator(G, cfg, 'colour', mask=(1, 0))(x, 0, 5)
    by_hand = torch.zeros(4, 11); by_hand[:, 3 + 5] = 1; by_hand[:, 9] = 1
    assert torch.equal(wrong, G(x, by_hand))
    assert not torch.equal(wrong, MaskTranslator(G, cfg, 'colour')(x, 0, 5))
    two = TwoPassTranslator(G, cfg)
    assert two.reference_guided and two.num_domains == 3
    out = two(x, 0, 1, x_ref=xr)
    ref_cls = reference_colour(xr)
    assert torch.equal(out, G(G(x, lab(1, 'form')), lab(ref_cls, 'colour')))
    assert torch.equal(two(x, 0, 1), G(x, lab(1, 'form')))
    given = TwoPassTranslator(G, cfg, colour_of=lambda r: torch.full((len(r),), 4))(x, 0, 1, x_ref=xr)
    assert torch.equal(given, G(G(x, lab(1, 'form')), lab(4, 'colour')))
    assert (reference_colour(data.sets['colour'][0]) == data.sets['colour'][1]).float().mean() > 0.9
    with pytest.raises(ValueError, match='joint'): TwoPassTranslator(G, cfg.replace(datasets='colour'))

class _Paint(Translator):
    "Known answer: paint the foreground in the target class's centre hue."
    num_domains = 6
    def translate(self, x_src, y_src, y_trg, z=None, x_ref=None):
        rgb = torch.tensor(colorsys.hsv_to_rgb(int(y_trg) / 6, 0.9, 0.8)) * 2 - 1
        fg = (x_src - x_src[..., :1, :1]).abs().amax(1, keepdim=True) > 0.15
        return torch.where(fg, rgb[None, :, None, None].expand_as(x_src), x_src)

def test_colour_scores_known_answers(data):
    x, bits = data.sets['form'][0][:12], data.sets['form'][1][:12]
    y = bits.argmax(1)
    s = colour_scores(_Paint(), x, y)
    assert s['colour_acc'] > 0.95 and s['shape_kept'] > 0.8 and s['pos_err'] < 1.5 and s['measured'] == 1.
    s0 = colour_scores(IdentityTranslator(6, 16), x, y)
    assert s0['shape_kept'] == 1. and s0['pos_err'] == 0. and s0['colour_acc'] < 0.4
    assert sum(s0['shapes'].values()) == 6 * 12

def test_any_method_loader_and_cli(tmp_path, capsys):
    "Lesson 02a's METHODS opens joint runs (trained here and the committed JNT); `stargan_v2 train --model stargan_v1_mask` trains one."
    from stargan_v2.translator import METHODS, load_translator as load_any
    from stargan_v2.multidata import trained_mask_dir
    from stargan_v2.cli import main
    assert METHODS['stargan_v1_mask'] == 'stargan_v2.multidata'
    assert main(['train', '--model', 'stargan_v1_mask', '--preset', 'tiny', '--iters', '2', '--out', str(tmp_path/'r'),
                 '--device', 'cpu', '--quiet']) == 0
    assert (tmp_path/'r'/'checkpoints'/'000002_nets.ckpt').exists()
    cfg, tr = load_any(tmp_path/'r')
    assert cfg.model == 'stargan_v1_mask' and cfg.names == NAMES and cfg.total_iters == 2 and isinstance(tr, MaskTranslator) and tr.block == 'form'
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(tr(x, 0, 1), MaskTranslator(load_joint(tmp_path/'r')[1], cfg, 'form')(x, 0, 1))
    assert main(['train', '--model', 'stargan_v1_mask', '--preset', 'tiny', '--iters', '2', '--out', str(tmp_path/'r'), '--quiet']) == 1
    assert 'resume' in capsys.readouterr().err
    assert main(['train', '--model', 'stargan_v1_mask', '--preset', 'tiny', '--datasets', 'form+shape', '--out', str(tmp_path/'x')]) == 2
    cj, tj = load_any(trained_mask_dir())     # the committed JNT generator
    assert cj.model == 'stargan_v1_mask' and cj.names == NAMES and tj.num_domains == 3 and tj(x, 0, 2).shape == x.shape
