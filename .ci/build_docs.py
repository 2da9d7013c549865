"""Build the documentation site from the lesson notebooks, without executing them: `python .ci/build_docs.py [OUT]`.

With Quarto on the PATH, `nbdev-docs` is nbdev's own route; Quarto does not install from the package registries this
project's machines reach (the `quarto-cli` package downloads its binary from GitHub at install time), so this builder
renders the same pages with nbconvert: every lesson `nbs/NN_name.ipynb` becomes `name.html` (the page nbdev's module
docstrings link to) and `name.html.md` (its Markdown twin, the `Docs:` link target), with the saved outputs (figures,
tables, the explorers' static figures) and MathJax for the maths; `index.html` is the README.
Cells flagged `#| hide` are left out and `#| ...` directive lines are stripped, as nbdev does.

--mathjax URL_OR_DIR: MathJax 2 to load (default: the CDN nbconvert uses). A local folder (e.g. Debian's
/usr/share/javascript/mathjax from `apt-get install libjs-mathjax`) is linked into the site, so it renders offline."""
import argparse, copy, html, json, os, re, shutil, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def page_name(nb:Path) -> str:
    "nbdev's page name: the numeric prefix stripped (`04a_data.ipynb` -> `data`)."
    return re.sub(r'^\d+[a-zA-Z0-9]*_', '', nb.stem.lower())

def directives(src:str) -> dict:
    d = {}
    for line in src.splitlines():
        m = re.match(r'\s*#\|\s*([\w-]+)\s*:?\s*(.*)$', line)
        if m: d[m.group(1)] = m.group(2).strip()
        elif line.strip(): break
    return d

def _links(md:str) -> str:
    "Links between lessons (`NN_x.ipynb`, `nbs/NN_x.ipynb`) point at their pages."
    return re.sub(r'\(((?:\.\./)?(?:nbs/)?)(\d+[a-zA-Z0-9]*_[\w-]+)\.ipynb(#[^)]*)?\)',
                  lambda m: f'({page_name(Path(m.group(2)))}.html{m.group(3) or ""})', md)

def clean(nb:dict) -> dict:
    "The notebook as the docs show it: no hidden or directive-only cells, no directive lines, no widget state."
    nb = copy.deepcopy(nb); cells = []
    for c in nb['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'markdown': c['source'] = _links(src); cells.append(c); continue
        if c['cell_type'] != 'code': continue
        d = directives(src)
        if 'hide' in d or 'exporti' in d or d.get('include', '').lower() == 'false': continue
        body = '\n'.join(l for l in src.splitlines() if not re.match(r'\s*#\|', l)).strip('\n')
        if not body and not c.get('outputs'): continue
        c['source'] = body
        for o in c.get('outputs', []):   # a widget without its saved state renders as nothing: keep its other formats
            o.get('data', {}).pop('application/vnd.jupyter.widget-view+json', None)
        cells.append(c)
    nb['cells'] = cells
    nb['metadata'].pop('widgets', None)
    return nb

def title_of(nb:dict, default:str) -> tuple:
    for c in nb['cells']:
        if c['cell_type'] == 'markdown':
            s = ''.join(c['source']); m = re.match(r'#\s+(.+)', s)
            if m:
                summ = re.search(r'^>\s*(.+)$', s, re.M)
                return m.group(1).strip(), (summ.group(1).strip() if summ else '')
    return default, ''

NAV_CSS = """<style>
.sv2-nav{position:fixed;top:0;left:0;width:15rem;height:100%;overflow:auto;padding:1rem;background:#f6f8fa;border-right:1px solid #ddd;font:14px/1.5 system-ui,sans-serif}
.sv2-nav a{display:block;color:#0366d6;text-decoration:none;padding:.1rem 0}.sv2-nav a.here{font-weight:bold;color:#000}
body{margin-left:16rem !important}
</style>"""

def nav(pages, here) -> str:
    items = [f'<a href="index.html"{" class=here" if here == "index" else ""}>stargan_v2</a><hr>']
    items += [f'<a href="{n}.html"{" class=here" if n == here else ""}>{html.escape(t)}</a>' for n, t, _ in pages]
    return f'<nav class="sv2-nav">{"".join(items)}</nav>'

def readme_notebook(pages) -> dict:
    "The README as a one-cell notebook: the site's home page."
    md = _links((ROOT/'README.md').read_text())
    return {'cells': [{'cell_type': 'markdown', 'id': 'readme', 'metadata': {}, 'source': md}], 'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5}

def build(out:Path, mathjax:str|None=None, only:list|None=None) -> list:
    "Render the site into `out`; `only`: notebook names to render (default: all; the nav always lists all)."
    # nbconvert's templates live in the Python installation's share/jupyter, which a virtual environment does not search
    base = Path(sys.base_prefix)/'share'/'jupyter'
    if base.is_dir() and str(base) not in os.environ.get('JUPYTER_PATH', '').split(os.pathsep):
        os.environ['JUPYTER_PATH'] = os.pathsep.join(filter(None, [os.environ.get('JUPYTER_PATH'), str(base)]))
    import nbformat
    from nbconvert import HTMLExporter, MarkdownExporter
    out = Path(out); shutil.rmtree(out, ignore_errors=True); out.mkdir(parents=True)
    mj = None
    if mathjax and Path(mathjax).is_dir():
        (out/'mathjax').symlink_to(Path(mathjax).resolve()); mj = 'mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe'
    elif mathjax: mj = mathjax
    hx = HTMLExporter(template_name='lab', exclude_input_prompt=True, exclude_output_prompt=True, **({'mathjax_url': mj} if mj else {}))
    mx = MarkdownExporter()
    nbs = sorted(p for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith(('_', '.')))
    docs = [(nb, clean(json.loads(nb.read_text()))) for nb in nbs]
    pages = [(page_name(p), *title_of(d, page_name(p))) for p, d in docs]
    docs.append((Path('index.ipynb'), readme_notebook(pages))); pages_all = pages + [('index', 'stargan_v2', '')]
    for (p, d), (name, title, summary) in zip(docs, pages_all):
        if only is not None and p.name != 'index.ipynb' and p.name not in only: continue
        node = nbformat.reads(json.dumps(d), as_version=4)   # joins multi-line strings
        body, _ = hx.from_notebook_node(node, resources={'metadata': {'name': title}})
        body = body.replace('</head>', NAV_CSS + '</head>', 1)
        body = re.sub(r'(<body[^>]*>)', lambda m: m.group(1) + nav(pages, name), body, count=1)
        (out/f'{name}.html').write_text(body)
        md, res = mx.from_notebook_node(node, resources={'output_files_dir': f'{name}_files'})
        for fn, data in (res.get('outputs') or {}).items():
            (out/fn).parent.mkdir(parents=True, exist_ok=True); (out/fn).write_bytes(data)
        (out/f'{name}.html.md').write_text(md)
    for rel in re.findall(r'!\[[^\]]*\]\(([^)\s]+)|src="([^"]+)"', (ROOT/'README.md').read_text()):
        rel = rel[0] or rel[1]                   # the README's own pictures (committed files) go with the home page
        if re.match(r'[a-z]+:', rel) or not (ROOT/rel).is_file(): continue
        (out/rel).parent.mkdir(parents=True, exist_ok=True); shutil.copy(ROOT/rel, out/rel)
    (out/'.nojekyll').touch()
    return pages_all

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('out', nargs='?', default=str(ROOT/'_docs'))
    ap.add_argument('--mathjax', default=None, help='MathJax 2 URL or local folder (default: the CDN)')
    a = ap.parse_args()
    pages = build(Path(a.out), a.mathjax)
    print(f"{len(pages)} pages in {a.out}")

if __name__ == '__main__': main()
