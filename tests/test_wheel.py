"""The wheel a user installs (no `-e`): built from this tree, installed into a clean virtual environment, used
from outside the source tree. An editable install hides files missing from the package (the MNIST sample did)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SMOKE = textwrap.dedent("""
    import advkeras, numpy as np
    from pathlib import Path
    assert "site-packages" in advkeras.__file__, advkeras.__file__  # the wheel, not the source tree
    from advkeras.data import load_sample
    from advkeras.models import build_classifier, train_classifier
    from advkeras.assess import default_config
    mnist, idc = load_sample("mnist"), load_sample("idc")
    assert len(mnist) > 1000 and len(idc) > 100 and default_config()["adaptive"]["enabled"]
    small = mnist.subset(np.arange(64))
    model = build_classifier("lenet", (28, 28, 1), 10, seed=0)
    history = train_classifier(model, small, small, epochs=1, seed=0).history
    assert len(history["loss"]) == 1 and np.isfinite(history["loss"][0])
    print("smoke ok", advkeras.__file__)
""")


def _run(cmd: list, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def test_the_wheel_installs_and_works_outside_the_source_tree(tmp_path):
    if not (ROOT / "setup.cfg").is_file():
        pytest.skip("not run from a source checkout")
    # Built from a copy: a stale build/ folder in the checkout would put files in the wheel that setup.cfg misses.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "runs", "docs",
                                                               "__pycache__", ".pytest_cache"))
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
          str(src)], cwd=tmp_path)
    wheel = next(dist.glob("advkeras-*.whl"))
    env_dir = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(env_dir)])
    python = env_dir / "bin" / "python"
    # Dependencies (TensorFlow and co., hundreds of MB, and no network here) are borrowed from the test
    # environment through a path entry; its own advkeras (editable, a .pth hook) is not processed from there.
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)])
    cli = _run([str(env_dir / "bin" / "advkeras"), "--help"], cwd=tmp_path)
    assert "assess" in cli.stdout and "Traceback" not in cli.stderr
    smoke = _run([str(python), "-c", SMOKE], cwd=tmp_path)
    assert "smoke ok" in smoke.stdout and str(site) in smoke.stdout
