"""The docs site in a real browser: .ci/build_docs.py renders the notebooks (without running them), a local HTTP server
serves the result, Playwright drives Debian's Chromium (/usr/bin/chromium; never `playwright install`), and the home page
and a lesson page must show their figures (no broken image) and typeset maths (no raw LaTeX left in the text).
CI builds the whole site first and passes it in $STARGAN_V2_DOCS; alone, this test builds the home page and one lesson."""
import functools, http.server, importlib.util, os, re, threading
from pathlib import Path
import pytest

pytestmark = pytest.mark.browser
CHROMIUM = '/usr/bin/chromium'
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
         '--disable-sync', '--no-first-run']
REPO = Path(__file__).parents[1]
LOCAL_MATHJAX = '/usr/share/javascript/mathjax'   # Debian's libjs-mathjax (.ci/run installs it): the test runs offline

def _builder():
    spec = importlib.util.spec_from_file_location('build_docs', REPO/'.ci'/'build_docs.py')
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); return m

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    if not os.path.exists(CHROMIUM): pytest.skip(f'{CHROMIUM} is missing (Debian: apt-get install chromium; .ci/run installs it)')
    if not os.path.isdir(LOCAL_MATHJAX): pytest.skip(f'{LOCAL_MATHJAX} is missing (Debian: apt-get install libjs-mathjax)')
    out = os.environ.get('STARGAN_V2_DOCS')
    if not out:
        out = tmp_path_factory.mktemp('docs')/'site'
        _builder().build(out, mathjax=LOCAL_MATHJAX, only=['03_losses.ipynb'])
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield Path(out), f'http://127.0.0.1:{srv.server_address[1]}/'
    srv.shutdown()

@pytest.fixture(scope='module')
def page():
    pw = pytest.importorskip('playwright.sync_api')
    with pw.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b.new_page()
        b.close()

def _local_images(page):
    "(src, naturalWidth) of every image served by the site itself (the README's remote badges are left out offline)."
    return page.evaluate("""() => Array.from(document.images).filter(i => !/^https?:/.test(i.getAttribute('src') || ''))
                                 .map(i => [i.getAttribute('src').slice(0, 40), i.complete ? i.naturalWidth : 0])""")

def _wait_mathjax(page):
    page.wait_for_function("() => window.MathJax && MathJax.Hub && MathJax.Hub.queue && MathJax.Hub.queue.pending === 0 "
                           "&& MathJax.Hub.queue.running === 0", timeout=60_000)

def test_site_pages_and_docstring_links(site):
    out, _ = site
    import stargan_v2.losses as L
    assert (out/'index.html').exists() and (out/'losses.html').exists() and (out/'losses.html.md').exists()
    link = re.search(r'Docs: (\S+)', L.__doc__).group(1)
    assert link.endswith('/losses.html.md')   # the module docstring's link names a page the site has
    if (out/'explorer.html').exists():          # the full site: the explorers' static figures are on their page
        assert (out/'explorer.html').read_text().count('src="data:image/png') >= 3

def test_home_page_renders(site, page):
    out, url = site
    page.goto(url + 'index.html'); page.wait_for_load_state('load')
    assert 'StarGAN v2' in page.inner_text('body')
    assert page.locator('nav a[href="losses.html"]').count() == 1          # every lesson is one click away
    assert page.locator('a[href="losses.html"]').count() >= 2               # the README's lesson table links the page too
    assert all(w > 0 for _, w in _local_images(page)), _local_images(page)

def test_lesson_page_figures_and_maths(site, page):
    out, url = site
    page.goto(url + 'losses.html'); page.wait_for_load_state('load'); _wait_mathjax(page)
    imgs = _local_images(page)
    assert len(imgs) >= 1 and all(w > 0 for _, w in imgs), imgs            # figures: present, none broken
    assert page.locator('.MathJax_CHTML, .MathJax, mjx-container').count() > 10   # maths typeset by MathJax
    text = ' '.join(page.locator('.jp-MarkdownOutput').all_inner_texts())
    raw = re.findall(r'\$[^$\n]{0,40}\\[a-zA-Z]+', text) + re.findall(r'\\(?:frac|lambda|mathbb|sum)\b', text)
    assert not raw, raw[:5]                                                   # no raw LaTeX left in the prose
    assert 'Traceback' not in page.inner_text('body')
