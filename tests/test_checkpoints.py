"Checkpoints: official-format round trips, real-world quirks, clear mismatch errors, refusal of unsafe pickles, downloads."
import io, json, pickle, shutil, subprocess, sys, zipfile
from contextlib import redirect_stdout
from dataclasses import asdict
from pathlib import Path
import pytest
import torch
from stargan_v2.core import Config, set_seed
from stargan_v2.models import build_nets, ema_copy
from stargan_v2.fan import FAN, load_fan
from stargan_v2.checkpoints import (NET_NAMES, CheckpointMismatch, UnsafeCheckpointError, infer_config, latest_checkpoint,
                                    load_nets, load_nets_ema, load_optims, safe_load, save_nets, save_optims)
from stargan_v2.pretrained import (PRETRAINED, cli_weights, download_pretrained, download_representative, inspect_checkpoint,
                                   load_pretrained)

CFG = Config.tiny()


def _outs(nets, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, CFG.img_size, CFG.img_size, generator=g)
    z, y = torch.randn(2, CFG.latent_dim, generator=g), torch.tensor([0, 2])
    with torch.no_grad():
        s = nets.mapping_network(z, y)
        out = [s, nets.generator(x, s), nets.style_encoder(x, y)]
        if nets.discriminator is not None: out.append(nets.discriminator(x, y))
    return out


def _same(a, b): return all(torch.equal(u, v) for u, v in zip(_outs(a), _outs(b)))


class _Evil:
    "Unpickling this would create a file: the test checks it never appears."
    def __init__(self, path): self.path = str(path)
    def __reduce__(self): return (exec, (f"open({self.path!r}, 'w').write('executed')",))


def test_official_format_roundtrip(tmp_path):
    set_seed(0)
    nets = build_nets(CFG)
    f = save_nets(nets, tmp_path / '000100_nets.ckpt')
    raw = torch.load(f, weights_only=True)
    assert list(raw) == list(NET_NAMES)
    assert all(list(raw[n]) == list(getattr(nets, n).state_dict()) for n in NET_NAMES)
    back = load_nets(f, build_nets(CFG), strict=True)
    assert _same(nets, back)
    ema = ema_copy(nets)
    save_nets(ema, tmp_path / '000100_nets_ema.ckpt')
    assert list(torch.load(tmp_path / '000100_nets_ema.ckpt', weights_only=True)) == list(NET_NAMES[:3])
    assert _same(ema, load_nets(tmp_path / '000100_nets_ema.ckpt', ema_copy(build_nets(CFG))))


def test_unsafe_pickle_is_refused_not_executed(tmp_path):
    marker = tmp_path / 'marker'
    for i, payload in enumerate([{'generator': _Evil(marker)}, _Evil(marker)]):
        f = tmp_path / f'evil{i}.ckpt'
        with open(f, 'wb') as fh: pickle.dump(payload, fh)          # a plain pickle, too
        torch.save(payload, tmp_path / f'evil{i}_torch.ckpt')
        for g in (f, tmp_path / f'evil{i}_torch.ckpt'):
            with pytest.raises((UnsafeCheckpointError, RuntimeError, pickle.UnpicklingError)) as e:
                load_nets(g, build_nets(CFG))
            assert 'refused' in str(e.value) or 'weights_only' in str(e.value).lower() or 'Weights only' in str(e.value)
    with pytest.raises(UnsafeCheckpointError, match='refused to load'): safe_load(tmp_path / 'evil0_torch.ckpt')
    with pytest.raises(UnsafeCheckpointError, match='refused to load'): load_fan(tmp_path / 'evil0_torch.ckpt')
    assert not marker.exists(), "the pickled object's __reduce__ was executed"


def test_quirks_dataparallel_legacy_extra_fan_missing_filter(tmp_path):
    set_seed(1)
    cfg = CFG.replace(w_hpf=1.)
    nets = ema_copy(build_nets(cfg))
    sd = {n: {'module.' + k: v for k, v in getattr(nets, n).state_dict().items()} for n in NET_NAMES[:3]}
    del sd['generator']['module.hpf.filter']
    sd['fan'] = {'some.unused.weight': torch.zeros(2)}          # extra entry: ignored when no FAN is attached
    torch.save(sd, tmp_path / 'published_like.ckpt', _use_new_zipfile_serialization=False)
    back = load_nets(tmp_path / 'published_like.ckpt', ema_copy(build_nets(cfg)))
    assert _same(nets, back)
    assert torch.equal(back.generator.hpf.filter, nets.generator.hpf.filter)


@pytest.mark.parametrize('change,phrase', [
    (dict(num_domains=2), 'this checkpoint has 3 domains; you built 2'),
    (dict(style_dim=16), 'this checkpoint has style_dim=8; you built style_dim=16'),
    (dict(img_size=32), 'this checkpoint has img_size=16; you built img_size=32'),
    (dict(w_hpf=1.), 'this checkpoint has w_hpf=0.0; you built w_hpf=1.0'),
])
def test_mismatch_message_names_network_keys_shapes_config(tmp_path, change, phrase):
    f = save_nets(build_nets(CFG), tmp_path / 'a.ckpt')
    with pytest.raises(CheckpointMismatch) as e: load_nets(f, build_nets(CFG.replace(**change)))
    msg = str(e.value)
    assert phrase in msg, msg
    assert "network '" in msg and ('shape' in msg or 'keys' in msg) and 'the file looks like' in msg


def test_mismatch_shapes_listed(tmp_path):
    f = save_nets(build_nets(CFG), tmp_path / 'a.ckpt')
    with pytest.raises(CheckpointMismatch) as e: load_nets(f, build_nets(CFG.replace(style_dim=16)))
    assert "mapping_network" in str(e.value) and 'checkpoint (8, 16) vs built (16, 16)' in str(e.value)


def test_ema_file_into_full_nets_and_non_strict(tmp_path):
    f = save_nets(ema_copy(build_nets(CFG)), tmp_path / 'e.ckpt')
    with pytest.raises(CheckpointMismatch, match="'discriminator': not in the file"): load_nets(f, build_nets(CFG))
    nets = build_nets(CFG); d_before = nets.discriminator.main[0].weight.clone()
    load_nets(f, nets, strict=False)                               # D is kept as it was
    assert torch.equal(nets.discriminator.main[0].weight, d_before)
    with pytest.raises(CheckpointMismatch, match='not a StarGAN v2'): load_nets({'foo': {}}, nets)


def test_optims_roundtrip(tmp_path):
    nets = build_nets(CFG)
    mk = lambda: {n: torch.optim.Adam(getattr(nets, n).parameters(), 1e-4, betas=(0., .99), weight_decay=1e-4) for n in NET_NAMES}
    opts = mk()
    for o in opts.values():
        for p in o.param_groups[0]['params']: p.grad = torch.ones_like(p)
        o.step()
    save_optims(opts, tmp_path / '000001_optims.ckpt')
    o2 = load_optims(tmp_path / '000001_optims.ckpt', mk())
    for n in NET_NAMES:
        a, b = opts[n].state_dict(), o2[n].state_dict()
        assert a['param_groups'] == b['param_groups']
        assert all(torch.equal(a['state'][k]['exp_avg_sq'], b['state'][k]['exp_avg_sq']) for k in a['state'])


def test_load_nets_ema_run_dir_config_and_inference(tmp_path):
    cfg = CFG.replace(num_domains=2, style_dim=4)
    run = tmp_path / 'run'; (run / 'checkpoints').mkdir(parents=True)
    (run / 'config.json').write_text(json.dumps(asdict(cfg)))
    nets = build_nets(cfg); ema = ema_copy(nets)
    for step in (2, 10, 9):
        save_nets(ema if step == 10 else ema_copy(build_nets(cfg)), run / 'checkpoints' / f'{step:06d}_nets_ema.ckpt')
    assert latest_checkpoint(run).name == '000010_nets_ema.ckpt'
    assert latest_checkpoint(run / 'checkpoints').name == '000010_nets_ema.ckpt'
    c, back = load_nets_ema(run)
    assert c == cfg and back.discriminator is None and not back.training
    x, y = torch.randn(2, 3, 16, 16), torch.tensor([1, 0])
    with torch.no_grad(): assert torch.equal(back.style_encoder(x, y), ema.style_encoder(x, y))
    (run / 'config.json').unlink()
    c2, _ = load_nets_ema(run)                                     # inferred from shapes
    assert (c2.num_domains, c2.style_dim, c2.img_size, c2.dim_in, c2.max_conv_dim) == (2, 4, 16, 8, 16)


def test_load_nets_ema_with_fan_in_file(tmp_path):
    cfg = CFG.replace(w_hpf=1., img_size=32)
    fan = FAN()
    nets = ema_copy(build_nets(cfg, fan=fan))
    save_nets(nets, tmp_path / '000001_nets_ema.ckpt')
    c, back = load_nets_ema(tmp_path / '000001_nets_ema.ckpt')
    assert c.w_hpf == 1. and back.fan is not None and not back.fan.training
    assert all(torch.equal(a, b) for a, b in zip(back.fan.state_dict().values(), fan.state_dict().values()))


def _serve(tmp_path):
    "A tiny nets_ema file and a wing-like file, as file:// URLs."
    src = save_nets(ema_copy(build_nets(CFG)), tmp_path / 'srv' / 'nets_ema.ckpt')
    return src


def test_download_pretrained_and_inspect_offline(tmp_path):
    src = _serve(tmp_path)
    p = download_pretrained('afhq', root=tmp_path / 'cache', url=src.as_uri())
    assert p == tmp_path / 'cache' / PRETRAINED['afhq'][1] and p.read_bytes() == src.read_bytes()
    txt = inspect_checkpoint(p)
    assert 'generator' in txt and 'num_domains=3' in txt and 'params' in txt
    with pytest.raises(FileNotFoundError, match='weights download celeba_hq'):
        load_pretrained('celeba_hq', root=tmp_path / 'cache', download=False)


def test_load_pretrained_builds_official_config_from_cache(tmp_path):
    "With an official-shaped file in the cache, load_pretrained builds Config.afhq() nets (meta-free: real 256 px nets)."
    cfg = Config.afhq()
    # a file with the official AFHQ shapes (zeros), written once; loading builds and fills 256 px nets
    from stargan_v2.models import Generator, MappingNetwork, StyleEncoder
    with torch.device('meta'):
        shapes = {'generator': Generator(256, 64, 512, 0.), 'mapping_network': MappingNetwork(16, 64, 3),
                  'style_encoder': StyleEncoder(256, 64, 3)}
    sd = {n: {k: torch.zeros(v.shape) for k, v in m.state_dict().items()} for n, m in shapes.items()}
    sd['fan'] = {'unused': torch.zeros(1)}                         # the AFHQ file's extra entry
    f = tmp_path / 'cache' / PRETRAINED['afhq'][1]; f.parent.mkdir(parents=True)
    torch.save(sd, f); del sd
    c, nets = load_pretrained('afhq', root=tmp_path / 'cache', download=False)
    assert c == cfg and nets.fan is None
    assert all(float(p.abs().sum()) == 0 for p in nets.mapping_network.parameters())


def test_download_representative_offline(tmp_path):
    arch = tmp_path / 'a.zip'
    with zipfile.ZipFile(arch, 'w') as z:
        z.writestr('stargan-v2-master/assets/representative/celeba_hq/src/female/a.jpg', b'x')
        z.writestr('stargan-v2-master/core/model.py', b'not extracted')
    out = download_representative(tmp_path / 'r', url=arch.as_uri())
    assert [str(p.relative_to(out)) for p in out.rglob('*') if p.is_file()] == ['celeba_hq/src/female/a.jpg']


def test_cli_weights(tmp_path):
    src = _serve(tmp_path)
    buf = io.StringIO()
    with redirect_stdout(buf): assert cli_weights(['download', 'afhq', '--root', str(tmp_path / 'c'), '--url', src.as_uri()]) == 0
    assert (tmp_path / 'c' / 'afhq' / '100000_nets_ema.ckpt').exists()
    exe = shutil.which('stargan_v2')
    assert exe, 'the stargan_v2 console script is not installed: run pip install -e .'
    out = subprocess.run([exe, 'weights', 'inspect', str(src)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert 'inferred config' in out.stdout and 'style_encoder' in out.stdout
    assert cli_weights(['inspect', str(tmp_path / 'missing.ckpt')]) == 1


def test_run_with_smaller_g_bottleneck_loads_back(tmp_path):
    "A run trained with a non-official `g_bottleneck` loads through its config.json with the same G (and outputs)."
    import json
    from dataclasses import asdict
    from stargan_v2.core import Config
    from stargan_v2.models import build_nets, ema_copy
    from stargan_v2.checkpoints import save_nets, load_nets_ema
    cfg = Config.tiny(img_size=32, g_bottleneck=4)
    ema = ema_copy(build_nets(cfg)).eval()
    (tmp_path / 'config.json').write_text(json.dumps(asdict(cfg)))
    save_nets(ema, tmp_path / 'checkpoints' / '000010_nets_ema.ckpt')
    cfg2, nets = load_nets_ema(tmp_path)
    assert cfg2.g_bottleneck == 4 and len(nets.generator.encode) == len(ema.generator.encode) == 5
    x, s = torch.rand(2, 3, 32, 32) * 2 - 1, torch.randn(2, cfg.style_dim)
    assert torch.equal(nets.generator(x, s), ema.generator(x, s))
