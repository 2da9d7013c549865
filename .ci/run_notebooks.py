"""Run every lesson notebook top to bottom the way a fresh Colab runtime does: with the library installed as the Colab
install cell installs it (its runtime dependencies only; no nbdev, no dev tools) and an IPython shell (execnb).

Skips the cells `nbdev-test` skips: `#| eval: false`, and those flagged `slow`, `cuda` or `notest`.
usage: python .ci/run_notebooks.py [--workers N] NOTEBOOK...   (exit 1 if any notebook fails)"""
import argparse, os, re, sys, time, traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

SKIP_FLAGS = {'slow', 'cuda', 'notest'}

def directives(source:str) -> dict:
    "The `#| key: value` lines at the top of a cell."
    d = {}
    for line in source.splitlines():
        m = re.match(r'\s*#\|\s*([\w-]+)\s*:?\s*(.*)$', line)
        if m: d[m.group(1)] = m.group(2).strip()
        elif line.strip(): break
    return d

def skipped(cell) -> bool:
    if cell.cell_type != 'code': return True
    d = directives(''.join(cell.source))
    return d.get('eval', 'true').lower() in ('false', '0', 'no') or bool(SKIP_FLAGS & d.keys())

def run_one(path:str) -> tuple:
    "Execute one notebook in this (fresh) process; returns (path, ok, seconds, error text)."
    from execnb.shell import CaptureShell
    from fastcore.nbio import read_nb
    os.environ['IN_TEST'] = '1'
    p = Path(path).resolve(); t0 = time.time()
    os.chdir(p.parent)
    try:
        nb = read_nb(p)
        sh = CaptureShell(p)
        sh.run_all(nb, exc_stop=True, preproc=skipped, cell_timeout=900)
        return path, True, time.time() - t0, ''
    except BaseException:
        return path, False, time.time() - t0, traceback.format_exc()[-6000:]

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('notebooks', nargs='+'); ap.add_argument('--workers', type=int, default=2)
    a = ap.parse_args()
    import multiprocessing as mp
    # a fresh process per notebook (like a fresh runtime), `workers` at a time
    with ProcessPoolExecutor(a.workers, mp_context=mp.get_context('spawn'), max_tasks_per_child=1) as ex:
        futs = [ex.submit(run_one, nb) for nb in a.notebooks]
        results = []
        for f in as_completed(futs):
            results.append(r := f.result())
            print(f"{'ok  ' if r[1] else 'FAIL'} {Path(r[0]).name}: {r[2]:.0f} s", flush=True)
    failed = [r for r in results if not r[1]]
    for path, _, _, err in failed: print(f"\n=== {path} failed:\n{err}", file=sys.stderr)
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0

if __name__ == '__main__': sys.exit(main())
