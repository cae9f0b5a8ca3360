"""The project's OmegaConf resolvers."""

import warnings

from omegaconf import OmegaConf

from llm_finetuning.resolvers import path_in, register_resolvers


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
