"Networks: official key/shape layout for both official configurations, parameter counts, branch selection, mask path."
import json, math, os
from pathlib import Path
import pytest
import torch
import torch.nn.functional as F
from stargan_v2.core import Config, count_params, set_seed
from stargan_v2.models import (Generator, MappingNetwork, StyleEncoder, Discriminator, build_nets, ema_copy, he_init,
                               nets_param_counts)
from stargan_v2.fan import FAN
from stargan_v2.checkpoints import infer_config, load_nets, save_nets, load_nets_ema

NAMES = ('generator', 'mapping_network', 'style_encoder', 'discriminator')
CONFIGS = {'num_domains_3__w_hpf_0': Config.afhq(), 'num_domains_2__w_hpf_1': Config.celeba_hq()}
# the measured official counts (fact sheet §2.8), independent of the layout file
OFFICIAL_COUNTS = {'num_domains_3__w_hpf_0': (33_892_995, 3_259_072, 20_949_760, 20_852_803),
                   'num_domains_2__w_hpf_1': (43_467_395, 2_438_272, 20_916_928, 20_852_290)}


def _layout_path():
    "The official layout file: $STARGAN_V2_LAYOUT, or the team's shared reference folder next to the repository."
    here = Path(__file__).resolve().parent
    cands = [os.environ.get('STARGAN_V2_LAYOUT'), here / 'official_state_dict_layout.json',
             here.parent.parent / 'shared' / 'reference' / 'official_state_dict_layout.json']
    return next((Path(c) for c in cands if c and Path(c).exists()), None)


@pytest.fixture(scope='module')
def layout():
    p = _layout_path()
    assert p is not None, 'tests/official_state_dict_layout.json is missing: it is committed with the tests'
    return json.loads(p.read_text())


def _meta_nets(cfg):
    with torch.device('meta'):
        return {'generator': Generator(cfg.img_size, cfg.style_dim, cfg.max_conv_dim, cfg.w_hpf, cfg.dim_in),
                'mapping_network': MappingNetwork(cfg.latent_dim, cfg.style_dim, cfg.num_domains, cfg.hidden_dim),
                'style_encoder': StyleEncoder(cfg.img_size, cfg.style_dim, cfg.num_domains, cfg.max_conv_dim, cfg.dim_in),
                'discriminator': Discriminator(cfg.img_size, cfg.num_domains, cfg.max_conv_dim, cfg.dim_in)}


@pytest.mark.parametrize('key', list(CONFIGS))
def test_official_keys_match(layout, key):
    "Every key and shape, in order, equals the layout file; buffers are the same; counts match the file and the sheet."
    cfg, ref = CONFIGS[key], layout[key]
    assert (ref['num_domains'], ref['w_hpf']) == (cfg.num_domains, cfg.w_hpf)
    for name, net in _meta_nets(cfg).items():
        ours = [(k, list(v.shape)) for k, v in net.state_dict().items()]
        assert ours == list(ref[name].items()), f"{key}/{name} layout differs"
        assert sorted(k for k, _ in net.named_buffers()) == sorted(ref['buffers'][name])
        assert count_params(net) == ref['param_counts'][name]
    assert tuple(nets_param_counts(cfg)[n] for n in NAMES) == OFFICIAL_COUNTS[key]


def test_fan_layout(layout):
    fan = FAN()
    assert [(k, list(v.shape)) for k, v in fan.state_dict().items()] == list(layout['fan']['state_dict'].items())
    assert count_params(fan, trainable_only=False) == layout['fan']['param_count'] == 6_333_603
    assert sum(b.numel() for b in fan.buffers()) == layout['fan']['buffer_elements']
    assert sorted(k for k, _ in fan.named_buffers()) == sorted(layout['fan']['buffers'])


@pytest.mark.parametrize('key', list(CONFIGS))
def test_official_shaped_weights_load_strict(layout, key, tmp_path):
    "State dicts shaped exactly like the layout load with strict=True, and infer_config recognises the configuration."
    cfg, ref = CONFIGS[key], layout[key]
    sd = {n: {k: torch.zeros(s) for k, s in ref[n].items()} for n in NAMES}
    got = infer_config(sd)
    for k in ('img_size', 'num_domains', 'style_dim', 'latent_dim', 'hidden_dim', 'w_hpf', 'dim_in', 'max_conv_dim'):
        assert got[k] == getattr(cfg, k), k
    for n in NAMES:   # one at a time, to keep memory low
        net = {'generator': lambda: Generator(256, 64, 512, cfg.w_hpf), 'mapping_network': lambda: MappingNetwork(16, 64, cfg.num_domains),
               'style_encoder': lambda: StyleEncoder(256, 64, cfg.num_domains), 'discriminator': lambda: Discriminator(256, cfg.num_domains)}[n]()
        net.load_state_dict(sd[n], strict=True)
        del net


def test_published_celeba_without_hpf_filter_is_recognised(layout):
    ref = layout['num_domains_2__w_hpf_1']
    sd = {n: {k: torch.zeros(s) for k, s in ref[n].items() if k != 'hpf.filter'} for n in NAMES[:3]}
    got = infer_config(sd)
    assert (got['w_hpf'], got['num_domains'], got['img_size']) == (1., 2, 256)


def test_generator_depth_and_shapes_small_sizes():
    for S, w, n_enc in [(16, 0., 2), (16, 1., 3), (32, 0., 3), (32, 1., 4), (64, 0., 4)]:
        G = Generator(S, style_dim=8, max_conv_dim=16, w_hpf=w, dim_in=8)
        assert len(G.encode) == len(G.decode) == n_enc
        assert G(torch.randn(2, 3, S, S), torch.randn(2, 8)).shape == (2, 3, S, S)
    for S in (16, 32):
        E, D = StyleEncoder(S, 8, 3, 16, 8), Discriminator(S, 3, 16, 8)
        assert E.shared[:-3](torch.zeros(1, 3, S, S)).shape[-1] == 4
        assert E(torch.randn(2, 3, S, S), torch.tensor([0, 2])).shape == (2, 8)
        assert D(torch.randn(2, 3, S, S), torch.tensor([0, 2])).shape == (2,)


def test_no_output_tanh():
    "G's output is unbounded: scaling to_rgb's conv scales the output beyond [-1,1]."
    set_seed(0)
    G = Generator(16, 8, 16, 0., 8)
    with torch.no_grad(): G.to_rgb[2].weight.mul_(100); G.to_rgb[2].bias.fill_(5.)
    assert G(torch.randn(2, 3, 16, 16), torch.randn(2, 8)).abs().max() > 1.5


def test_branch_selection_and_gradients():
    "F, E, D pick branch y[i] for sample i; only the selected branches get gradients."
    set_seed(0)
    Fm = MappingNetwork(4, 8, 3, 16)
    z, y = torch.randn(3, 4), torch.tensor([2, 2, 0])
    s = Fm(z, y)
    h = Fm.shared(z)
    for i in range(3): assert torch.allclose(s[i], Fm.unshared[int(y[i])](h[i:i + 1])[0], atol=1e-6)
    s.pow(2).sum().backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in Fm.unshared[1].parameters())
    assert all(p.grad.abs().sum() > 0 for k in (0, 2) for p in Fm.unshared[k].parameters())
    E = StyleEncoder(16, 8, 3, 16, 8); x = torch.randn(3, 3, 16, 16)
    e = E(x, y); feats = E.shared(x).flatten(1)
    for i in range(3): assert torch.allclose(e[i], E.unshared[int(y[i])](feats[i]), atol=1e-5)
    D = Discriminator(16, 3, 16, 8)
    d = D(x, y); logits = D.main(x).flatten(1)
    assert torch.allclose(d, logits[torch.arange(3), y])
    y2 = torch.stack([y, (y + 1) % 3], 1)                  # (B,m) labels: m branches from one pass
    assert torch.allclose(D(x, y2), torch.stack([d, logits[torch.arange(3), y2[:, 1]]], 1))
    d.sum().backward()
    g = D.main[-1].weight.grad[:, :, 0, 0].abs().sum(1)
    assert g[1] == 0 and g[0] > 0 and g[2] > 0      # output channel of domain 1 unused by this batch


def test_mask_path_only_at_32_64_128_and_no_skips():
    "At 256 px (narrow widths): masks add high-passed masked encoder features after decoder blocks of side 32/64/128."
    set_seed(0)
    G = Generator(256, style_dim=4, max_conv_dim=8, w_hpf=1., dim_in=4)
    x, s = torch.randn(1, 3, 256, 256), torch.randn(1, 4)
    m0, m1 = torch.rand(1, 1, 256, 256), torch.rand(1, 1, 256, 256)
    with torch.no_grad():
        # the decoder blocks return the residual only (w_hpf > 0): no skip, no /sqrt(2)
        h = torch.randn(1, 8, 8, 8)
        for b in G.decode[:2]: assert torch.allclose(b(h, s), b._residual(h, s))
        enc, h = {}, G.from_rgb(x)
        for b in G.encode: enc[h.shape[-1]] = h; h = b(h)
        added = []
        for b in G.decode:
            h = b._residual(h, s)
            S = h.shape[-1]
            if S in (32, 64, 128):
                m = F.interpolate(m0 if S == 32 else m1, size=S, mode='bilinear', align_corners=False)
                k = torch.tensor([[-1., -1, -1], [-1, 8, -1], [-1, -1, -1]]).expand(h.shape[1], 1, 3, 3)
                h = h + F.conv2d(m * enc[S], k, padding=1, groups=h.shape[1]); added.append(S)
        assert added == [32, 64, 128]
        assert torch.allclose(G(x, s, masks=(m0, m1)), G.to_rgb(h), atol=1e-5)
        # swapping the two masks changes the output (masks[0] is used at 32 px only)
        assert not torch.allclose(G(x, s, masks=(m1, m0)), G(x, s, masks=(m0, m1)), atol=1e-4)


def test_build_nets_he_init_and_ema():
    cfg = Config.tiny()
    nets = build_nets(cfg)
    convs = [m for m in nets.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert all(m.bias is None or bool((m.bias == 0).all()) for m in convs)
    w = nets.generator.encode[0].conv1.weight
    assert abs(w.std().item() - math.sqrt(2 / (w[0].numel()))) < 0.25 * math.sqrt(2 / w[0].numel())
    ema = ema_copy(nets)
    assert ema.discriminator is None and not any(p.requires_grad for p in ema.parameters())
    assert all(torch.equal(a, b) for a, b in zip(ema.generator.parameters(), nets.generator.parameters()))
    assert ema.generator is not nets.generator


def test_official_format_roundtrip_with_fan(tmp_path):
    "w_hpf>0 nets with a FAN: save -> load_nets_ema (strict) -> identical masks and outputs."
    set_seed(0)
    cfg = Config.tiny(w_hpf=1., img_size=32, name='tiny_hpf')
    fan = FAN()
    for m in fan.modules():
        if isinstance(m, torch.nn.BatchNorm2d): m.running_var.uniform_(0.5, 2); m.running_mean.uniform_(-.1, .1)
    nets = build_nets(cfg, fan=fan); ema = ema_copy(nets)
    assert ema.fan is nets.fan
    save_nets(ema, tmp_path / '000001_nets_ema.ckpt')
    assert list(torch.load(tmp_path / '000001_nets_ema.ckpt', weights_only=True)) == list(NAMES[:3]) + ['fan']
    cfg2, back = load_nets_ema(tmp_path / '000001_nets_ema.ckpt', cfg)
    x, y = torch.rand(1, 3, 32, 32) * 2 - 1, torch.tensor([1])
    with torch.no_grad():
        m_a, m_b = ema.masks(x), back.masks(x)
        assert all(torch.equal(a, b) for a, b in zip(m_a, m_b))
        s = ema.style_encoder(x, y)
        assert torch.equal(back.style_encoder(x, y), s)
        assert torch.equal(back.generator(x, s, masks=m_b), ema.generator(x, s, masks=m_a))
