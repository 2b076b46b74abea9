"""How deploykit tells a user to install an extra: the way it was installed (core/lazy.py)."""

from pathlib import Path

from deploykit.core.lazy import extra_hint, install_hint, source_checkout

REPO = Path(__file__).resolve().parents[2]


def test_a_source_checkout_gets_an_editable_install_hint(tmp_path, monkeypatch):
    assert source_checkout() == REPO  # the tests run deploykit from its checkout
    monkeypatch.chdir(REPO)
    assert extra_hint("trt") == "pip install -e '.[trt]'"
    monkeypatch.chdir(tmp_path)  # elsewhere: the checkout's path, so the command works from anywhere
    assert extra_hint("trt") == f"pip install -e '{REPO}[trt]'"
    assert install_hint("tensorrt") == extra_hint("trt") and install_hint("pynvml") == extra_hint("nvidia")
    assert install_hint("somepkg") == "pip install somepkg"


def test_an_installed_package_gets_the_pypi_hint(tmp_path):
    site = tmp_path / "site-packages" / "deploykit"  # no pyproject.toml beside an installed package
    site.mkdir(parents=True)
    assert source_checkout(site) is None
    assert extra_hint("trt", site) == "pip install 'deploykit[trt]'"
    other = tmp_path / "other" / "deploykit"  # a checkout of some other project is not deploykit's
    other.mkdir(parents=True)
    (other.parent / "pyproject.toml").write_text('[project]\nname = "other"\n')
    assert extra_hint("openvino", other) == "pip install 'deploykit[openvino]'"
