"""Make a Colab-like virtual environment: PyTorch as preinstalled on Colab (linked from this Python's site-packages
rather than downloaded again, with its dependency closure), then the library installed the way the lessons' Colab
cell installs it: `pip install <project>` (runtime dependencies only: no nbdev, pytest, pytorch-fid, ...), plus
execnb to run the notebooks. usage: python .ci/colab_venv.py VENV_DIR"""
import importlib.metadata as md, os, re, subprocess, sys, sysconfig, venv
from pathlib import Path
from packaging.requirements import Requirement

PREINSTALLED = ['torch', 'torchvision']   # what Colab ships and we reuse; everything else comes from pip

def closure(names):
    "Distributions `names` and, recursively, the requirements they need on this platform (no extras)."
    seen, todo = {}, list(names)
    while todo:
        n = re.sub(r'[-_.]+', '-', todo.pop()).lower()
        if n in seen: continue
        try: d = md.distribution(n)
        except md.PackageNotFoundError: continue
        seen[n] = d
        for r in d.requires or []:
            r = Requirement(r)
            if r.marker is None or r.marker.evaluate({'extra': ''}): todo.append(r.name)
    return seen

def main(dest):
    dest = Path(dest).absolute()
    if not (dest/'bin'/'python').exists(): venv.create(dest, with_pip=True, clear=True)
    vpy = dest/'bin'/'python'
    vsite = Path(subprocess.check_output([vpy, '-c', "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    linked = 0
    for n, d in closure(PREINSTALLED).items():
        root = Path(d.locate_file(''))
        tops = {Path(f).parts[0] for f in (d.files or []) if not str(f).startswith('..')}
        for t in tops:
            src, dst = root/t, vsite/t
            if src.exists() and not dst.exists() and not dst.is_symlink() and t != '__pycache__': dst.symlink_to(src); linked += 1
    print(f"linked {linked} entries of {len(closure(PREINSTALLED))} preinstalled distributions into {vsite}")
    pip = [vpy, '-m', 'pip', 'install', '-q', '--disable-pip-version-check']
    subprocess.run(pip + [str(Path(__file__).resolve().parents[1]), 'execnb'], check=True)
    out = subprocess.run([vpy, '-m', 'pip', 'list', '--format=freeze'], capture_output=True, text=True).stdout
    dev = [p for p in ('nbdev', 'pytest', 'pytorch-fid', 'pytorch_fid', 'playwright', 'voila') if re.search(rf'^{p}==', out, re.M | re.I)]
    if dev: sys.exit(f"the Colab-like venv has dev packages {dev}: it must not")

if __name__ == '__main__': main(sys.argv[1])
