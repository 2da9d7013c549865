import os
os.environ.setdefault("MPLBACKEND", "Agg")

def pytest_configure(config):
    for m in ("slow: minutes of compute or a GPU",
              "reliability: determinism, exact resume, NaN guards, AMP + R1",
              "browser: explorers rendered in a headless browser"):
        config.addinivalue_line("markers", m)
