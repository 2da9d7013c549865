"Helpers shared by the training tests of every method: bitwise comparison of checkpoints, and a callback that poisons a weight."
import torch
from fastai.callback.core import Callback
from stargan_v2.checkpoints import safe_load

def ckpt_files(out, it:int, kinds=('nets', 'optims')) -> dict:
    "The checkpoint files of iteration `it` in the run folder `out`, loaded safely, by kind."
    return {k: safe_load(out/'checkpoints'/f'{it:06d}_{k}.ckpt') for k in kinds}

def assert_equal(a, b, path=''):
    "Nested dicts/lists/tensors equal bit for bit; the failure names the path of the first difference."
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a: assert_equal(a[k], b[k], f'{path}/{k}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)): assert_equal(x, y, f'{path}[{i}]')
    elif isinstance(a, torch.Tensor): assert torch.equal(a, b), path
    else: assert a == b, path

class Poison(Callback):
    "Turn one weight of `net(model)` (default: the discriminator) into NaN before iteration `at + 1`."
    order = -7
    def __init__(self, at:int, net=lambda m: m.discriminator): self.at, self.net = at, net
    def before_batch(self):
        if self.learn.train_iter == self.at:
            with torch.no_grad(): next(self.net(self.learn.model).parameters()).fill_(float('nan'))
