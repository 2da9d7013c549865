"""The explorers in a real browser: Voila serves tests/apps/explorer_app.ipynb on 127.0.0.1, Playwright drives
Debian's Chromium (/usr/bin/chromium; never `playwright install`), and every interaction must change the pixels
of the displayed image, with no Python traceback on the page."""
import io, os, socket, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser

CHROMIUM = '/usr/bin/chromium'
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--no-first-run']
APP = Path(__file__).parent / 'apps' / 'explorer_app.ipynb'
REPO = Path(__file__).parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def _wait_port(port: int, proc, timeout: float) -> None:
    "Wait until voila accepts connections on 127.0.0.1:port."
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None: raise RuntimeError(f'voila exited early with code {proc.returncode}')
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=2): return
        except OSError: time.sleep(0.3)
    raise TimeoutError(f'voila did not listen on 127.0.0.1:{port} within {timeout:.0f}s')


@pytest.fixture(scope='module')
def voila_url():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f'{CHROMIUM} is missing (Debian: apt-get install chromium; .ci/run installs it)')
    port = _free_port()
    log = tempfile.TemporaryFile()
    env = {**os.environ, 'MPLBACKEND': 'Agg', 'OMP_NUM_THREADS': '1'}
    cmd = [sys.executable, '-m', 'voila', str(APP), '--no-browser', f'--port={port}', '--Voila.ip=127.0.0.1',
           '--Voila.port_retries=0', '--show_tracebacks=True', '--Voila.token=']
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f'http://127.0.0.1:{port}/'
    try:
        _wait_port(port, proc, timeout=60)
        yield url
    except Exception:
        log.seek(0); print(log.read().decode(errors='replace')[-5000:]); raise
    finally:
        proc.terminate()
        try: proc.wait(timeout=10)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait(timeout=10)
        log.seek(0); out = log.read().decode(errors='replace')
        if 'Traceback' in out: print(out[-5000:])
        log.close()


def _pixels(loc) -> np.ndarray:
    "What the browser shows in the element (a screenshot of it), as an RGB array."
    return np.asarray(Image.open(io.BytesIO(loc.screenshot(timeout=10_000))).convert('RGB')).astype(int)


def _changes(loc, act, timeout: float = 20.) -> bool:
    "Do `act`, then wait until the element's pixels differ from before."
    before = _pixels(loc); act()
    t0 = time.time()
    while time.time() - t0 < timeout:
        time.sleep(0.3)
        now = _pixels(loc)
        if now.shape != before.shape or np.abs(now - before).mean() > 0.5: return True
    return False


def _shapes_shown(loc, n_out: int = 4) -> list:
    "Read the latent explorer's strip from the screen (source + n_out outputs) and measure the shape of each output."
    import torch
    from stargan_v2.shapes import measure_shapes
    a = _pixels(loc)
    h, w = a.shape[:2]; size = h; gap = (w - (n_out + 1) * size) // n_out
    tiles = [a[:, i * (size + gap): i * (size + gap) + size] for i in range(1, n_out + 1)]
    x = torch.stack([torch.from_numpy(np.asarray(Image.fromarray(t.astype(np.uint8)).resize((64, 64), Image.BILINEAR))).permute(2, 0, 1)
                     for t in tiles]).float() / 127.5 - 1
    return measure_shapes(x)['domain'].tolist()


def _drag(page, handle, dx: float) -> None:
    "Drag a slider handle horizontally by dx pixels."
    b = handle.bounding_box()
    page.mouse.move(b['x'] + b['width'] / 2, b['y'] + b['height'] / 2); page.mouse.down()
    page.mouse.move(b['x'] + b['width'] / 2 + dx, b['y'] + b['height'] / 2, steps=5); page.mouse.up()


def test_explorers_in_browser(voila_url):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={'width': 1300, 'height': 2400})
            errors = []; page.on('pageerror', lambda e: errors.append(str(e)))
            page.goto(voila_url, timeout=90_000, wait_until='domcontentloaded')
            lat = page.locator('img.sg2-latent-img')
            lat.wait_for(state='visible', timeout=90_000)
            for cls in ('sg2-ref-img', 'sg2-interp-img', 'sg2-style-img'):
                page.locator(f'img.{cls}').wait_for(state='visible', timeout=30_000)
            page.wait_for_function("Array.from(document.querySelectorAll('img.widget-image')).every(i => i.naturalWidth > 0)",
                                   timeout=30_000)

            # 1 · latent explorer: move the ψ slider, change the domain, click resample
            lat.scroll_into_view_if_needed()
            assert _changes(lat, lambda: _drag(page, page.locator('.sg2-latent-psi .noUi-handle'), -120)), 'ψ slider did not change the image'
            assert _changes(lat, lambda: page.locator('.sg2-latent-domain select').select_option(index=0)), 'domain change did not change the image'
            # on the trained model, the target domain decides the shape the browser shows (read back from its pixels)
            shown = _shapes_shown(lat)
            assert shown.count('circle') >= 3, f'target circle, but the explorer shows {shown}'
            assert _changes(lat, lambda: page.locator('.sg2-latent-domain select').select_option(index=2))
            shown = _shapes_shown(lat)
            assert shown.count('triangle') >= 3, f'target triangle, but the explorer shows {shown}'
            assert _changes(lat, lambda: page.locator('button.sg2-latent-resample').click()), 'resample did not change the image'
            # 2 · reference explorer: swap roles
            ref = page.locator('img.sg2-ref-img'); ref.scroll_into_view_if_needed()
            assert _changes(ref, lambda: page.locator('button.sg2-ref-swap').click()), 'swap did not change the image'
            # 3 · interpolation explorer: move t
            itp = page.locator('img.sg2-interp-img'); itp.scroll_into_view_if_needed()
            assert _changes(itp, lambda: _drag(page, page.locator('.sg2-interp-t .noUi-handle'), 150)), 't slider did not change the image'
            # 4 · style-space explorer: move direction 1
            sty = page.locator('img.sg2-style-img'); sty.scroll_into_view_if_needed()
            assert _changes(sty, lambda: _drag(page, page.locator('.sg2-style-dir1 .noUi-handle'), 100)), 'direction slider did not change the image'

            text = page.inner_text('body')
            for bad in ('Traceback', 'There was an error when executing cell', 'Exception'):
                assert bad not in text, f'the page shows an error ({bad!r}):\n{text[:3000]}'
            assert page.locator('[data-mime-type="application/vnd.jupyter.stderr"]').count() == 0, 'a cell wrote to stderr'
            assert not errors, f'JavaScript errors: {errors}'
        finally:
            browser.close()
