"The lineage table (lesson 14): the fakes' known values, the registry's hooks, the equal-budget schedule, `stargan_v2 eval RUN [RUN ...]` and the benchmark's tiny --train path."
import importlib.util, json, sys, types
from dataclasses import asdict, replace
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
import torch

import stargan_v2.compare as C
from stargan_v2.core import Config
from stargan_v2.shapes import make_shapes
from stargan_v2.translator import IdentityTranslator, CopyReferenceTranslator, Translator


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp('shapes')/'shapes'
    make_shapes(r, n_train=30, n_val=8, seed=0)
    return r

@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):   # measured real images go to a private cache
    monkeypatch.setenv('STARGAN_V2_CACHE', str(tmp_path_factory.getbasetemp()/'cache'))


def test_fakes_give_the_floor_and_ceiling(root):
    "Identity: acc 0, position error 0, hue error to source 0; copy-the-reference: acc 1, hue error to reference 0."
    rows = C.score_rows(IdentityTranslator(3, 16), C.LINEAGE['identity'].rows, 16, root, n_per_domain=6, num_outs=3)
    rows += C.score_rows(CopyReferenceTranslator(3, 16), C.LINEAGE['copy_reference'].rows, 16, root, n_per_domain=6, num_outs=3)
    df = C.lineage_table(rows).set_index('model')
    idt, cpy = df.loc['identity (floor)'], df.loc['copy the reference (ceiling)']
    assert idt['acc'] == 0 and idt['pos_err'] == pytest.approx(0, abs=1e-6) and idt['hue_err_source'] == pytest.approx(0, abs=1e-6)
    assert idt['diversity'] == 0 and idt['generators'] == 0 and idt['hue_err_reference'] > 30   # it ignores the reference
    assert cpy['acc'] == 1 and cpy['hue_err_reference'] == pytest.approx(0, abs=1e-6) and cpy['pos_err'] > 3
    assert np.isnan(cpy['diversity']) and cpy['mode'] == 'reference'
    md = C.lineage_markdown(C.lineage_table(rows))
    assert md.splitlines()[0].startswith('| model | generators for k=3 | G params |') and '| identity (floor) | — | 0 | 0 | 0.000 | 0.00 |' in md

def test_row_values_pick_the_mode():
    sc = {f'{k}_{m}': float(i) for i, (k, m) in enumerate((k, m) for k in ('acc', 'pos_err', 'hue_err_source', 'shapes_fid') for m in ('latent', 'reference'))}
    sc |= dict(hue_err_reference=7., diversity_latent=50., diversity_l1_latent=.1)
    lat, ref = C.row_values(sc, 'latent', True), C.row_values(sc, 'reference', True)
    assert (lat['acc'], ref['acc'], lat['shapes_fid'], ref['shapes_fid']) == (0., 1., 6., 7.)
    assert np.isnan(lat['hue_err_reference']) and ref['hue_err_reference'] == 7 and np.isnan(ref['diversity'])
    assert C.row_values(sc, 'latent', False)['hue_err_reference'] == 7   # a deterministic method is shown the reference it ignores

class _NeedsRef(Translator):
    "Reference-guided and deterministic, refuses calls without a reference (like the two-pass v1)."
    reference_guided = True
    def __init__(self): self.num_domains, self.img_size = 3, 16
    def translate(self, x_src, y_src, y_trg, z=None, x_ref=None):
        assert x_ref is not None, 'needs a reference'
        return x_ref.clone()

def test_rows_of_absent_lessons_are_skipped(root, monkeypatch):
    "A row whose lesson module is absent is skipped with its reason; with lesson 12b present the same entry gives numbers."
    names = ['identity', 'stargan_v1_joint']
    label = "StarGAN v1 joint, reference's colour label (two passes)"
    with monkeypatch.context() as m:
        m.setitem(sys.modules, 'stargan_v2.multidata', None)               # as if lesson 12b were not there
        df, _ = C.run_lineage('committed', names, n_per_domain=2, num_outs=2, root=root, verbose=False)
        joint = df.set_index('model').loc[label]
        assert joint['status'].startswith('skipped: needs module stargan_v2.multidata') and np.isnan(joint['acc'])
        assert 'Not in the table: StarGAN v1 joint' in C.lineage_markdown(df)
    df, _ = C.run_lineage('committed', names, n_per_domain=2, num_outs=2, root=root, verbose=False)
    joint = df.set_index('model').loc[label]                                # the committed two-pass model of lesson 12b
    assert not str(joint['status']).startswith('skipped') and 0 <= joint['acc'] <= 1 and joint['hue_err_reference'] < 60
    monkeypatch.setitem(C.LINEAGE, 'stargan_v1_joint', replace(C.LINEAGE['stargan_v1_joint'], committed='nowhere_joint'))
    df, _ = C.run_lineage('committed', names, n_per_domain=2, num_outs=2, root=root, verbose=False)
    assert df.set_index('model').loc[label, 'status'] == 'skipped: no committed model in stargan_v2/trained/nowhere_joint'
    rows = C.score_rows(_NeedsRef(), C.LINEAGE['stargan_v1_joint'].rows, 16, root, n_per_domain=2, num_outs=2)   # ReferenceOnly lets it be scored
    assert rows[0]['acc'] == 1 and rows[0]['hue_err_reference'] == pytest.approx(0, abs=1e-6)
    assert C.missing_requirement(C.LINEAGE['stargan_v1_sa'].requires) is None

def test_scale_schedule_and_updates():
    from stargan_v2.v1 import V1Config
    from stargan_v2.discogan import DiscoConfig
    c = C.scale_schedule(V1Config.shapes(), 4000)   # half the preset's 8,000 iterations
    assert (c.total_iters, c.decay_iters, c.lr_update_step, c.sample_every) == (4000, 1500, 15, 4000)
    assert C.scale_schedule(Config.shapes(), 2000).ds_iter == 2000
    d = DiscoConfig.shapes()
    assert C.LINEAGE['discogan'].g_updates(d, 3000) == 2000 and C.LINEAGE["stargan_v1"].g_updates(c, 4000) == 4000 // c.n_critic
    assert C.LINEAGE['stargan_v2'].g_updates(Config.shapes(), 4000) == 8000

def _v2_run(tmp_path):
    from stargan_v2.models import build_nets, ema_copy
    from stargan_v2.checkpoints import save_nets
    run = tmp_path/'v2run'; (run/'checkpoints').mkdir(parents=True)
    cfg = Config.tiny()
    (run/'config.json').write_text(json.dumps(asdict(cfg)))
    save_nets(ema_copy(build_nets(cfg)), run/'checkpoints'/'000010_nets_ema.ckpt')
    return run

def test_eval_several_runs(root, tmp_path, capsys):
    "`stargan_v2 eval RUN [RUN ...]`: a run folder, a committed model and the fakes, one table (markdown, CSV, figure)."
    from stargan_v2.cli import main
    run = _v2_run(tmp_path)
    rc = main(['eval', str(run), 'stargan_v1_shapes', 'identity', 'copy-reference', '--data', str(root), '--n-per-domain', '2',
               '--num-outs', '2', '--csv', str(tmp_path/'t.csv'), '--figure', str(tmp_path/'f.png')])
    assert rc == 0
    out = capsys.readouterr().out
    df = pd.read_csv(tmp_path/'t.csv')
    assert df['model'].tolist() == [f'{run}, latent', f'{run}, reference', 'stargan_v1_shapes', 'identity', 'copy-reference']
    assert df['mode'].tolist() == ['latent', 'reference', 'latent', 'latent', 'reference']
    assert (df.set_index('model').loc['stargan_v1_shapes', ['generators', 'diversity']] == [1, 0]).all()
    assert df.set_index('model').loc['identity', 'acc'] == 0 and df.set_index('model').loc['copy-reference', 'acc'] == 1
    assert '| identity | — | 0 |' in out and (tmp_path/'f.png').stat().st_size > 1000
    assert main(['eval', 'no_such_run']) == 1 and 'not a run folder' in capsys.readouterr().err

def test_single_run_eval_is_unchanged(tmp_path):
    import stargan_v2.evaluate as E
    assert not E._several_runs(['--checkpoint', 'x', '--data', 'y']) and not E._several_runs([]) and E._several_runs(['a', 'b'])
    with pytest.raises(SystemExit): E.cli_eval([])                        # --checkpoint still required for the one-run form

def test_benchmark_tiny_train_end_to_end(tmp_path):
    "benchmarks/train_lineage.py --train on the tiny presets: calibrate, train within budget, score, write the four files."
    spec = importlib.util.spec_from_file_location('train_lineage', Path(__file__).parents[1]/'benchmarks'/'train_lineage.py')
    tl = importlib.util.module_from_spec(spec); spec.loader.exec_module(tl)
    out = tmp_path/'out'
    assert tl.main(['--train', '--preset', 'tiny', '--only', 'identity', 'stargan_v1', 'discogan', 'stargan_v1_sa', '--minutes', '0.01',
                    '--probe', '5', '--jobs', '1', '--n-per-domain', '2', '--num-outs', '2', '--runs', str(tmp_path/'runs'), '--out', str(out),
                    '--train-seed', '5']) == 0
    df = pd.read_csv(out/'lineage.csv').set_index('model')
    for m in ('StarGAN v1', 'DiscoGAN (3 pairs)'):
        assert df.loc[m, 'status'] == 'ok' and df.loc[m, 'iterations'] >= 1 and df.loc[m, 'train_cpu_min'] > 0
        assert df.loc[m, 'source'].startswith("trained here: preset 'tiny', 0.01 CPU min budget")
    assert df.loc['DiscoGAN (3 pairs)', 'generators'] == 6 and df.loc['DiscoGAN (3 pairs)', 'diversity'] == 0
    assert (tmp_path/'runs'/'stargan_v1'/'config.json').is_file()
    for m in ('stargan_v1', 'discogan', 'stargan_v1_sa'):   # --train-seed reaches every method's config (their presets' seeds differ)
        assert json.loads((tmp_path/'runs'/m/'config.json').read_text())['seed'] == 5, m
    meta = json.loads((out/'lineage.json').read_text())
    assert meta['settings']['train_seed'] == 5
    assert meta['command'].startswith('python benchmarks/train_lineage.py --train') and (out/'lineage.png').is_file()

def test_a_method_without_the_preset_is_skipped_when_training(monkeypatch):
    "Training: an entry whose preset cannot be built (say a hooked lesson without a `tiny` preset) is skipped with the reason."
    from stargan_v2.v1 import V1Config
    monkeypatch.setitem(C.LINEAGE, 'stargan_v1_sa', replace(C.LINEAGE['stargan_v1_sa'], requires=(), preset=lambda n: getattr(V1Config, n + '_nope')()))
    df, _ = C.run_lineage('train', ['stargan_v1_sa'], preset='tiny', verbose=False)
    st = df['status'].iloc[0]
    assert st.startswith("skipped: no 'tiny' preset") and 'tiny_nope' in st

def test_seed_verdicts_keep_only_what_every_seed_says():
    "A claim keeps its verdict only when every training seed gives it; the spread is each score's range across seeds."
    from stargan_v2.trained import trained_dir
    a = pd.read_csv(trained_dir('lineage_equal')/'lineage.csv')
    b = a.copy(); b.loc[b['model'] == 'DiscoGAN (3 pairs)', 'acc'] = 0.2     # v1 now clearly beats DiscoGAN in run b
    v = C.seed_verdicts({'s0': a, 's1': b}).set_index('claim')
    claim = 'StarGAN reaches the target domain more often than a pairwise model'
    assert v.loc[claim, 'verdict (s1)'] == 'confirmed' and v.loc[claim, 'verdict'] == 'seed-dependent'
    same = C.seed_verdicts({'s0': a, 's1': a})
    assert (same['verdict'] == same['verdict (s0)']).all() and 'seed-dependent' not in set(same['verdict'])
    sp = C.seed_spread({'s0': a, 's1': b})
    assert sp.loc['DiscoGAN (3 pairs)', ('acc', 'range')] == pytest.approx(a.set_index('model').loc['DiscoGAN (3 pairs)', 'acc'] - 0.2)
    assert sp.loc['StarGAN v1', ('acc', 'range')] == 0
