"""The project's OmegaConf resolvers."""

from llm_finetuning.resolvers import path_in


def test_path_in_a_root_or_the_relative_path_alone():
    assert path_in(None, "data") == "data"
    assert path_in("", "data") == "data"
    assert path_in("/Volumes/a/b/c/", "data") == "/Volumes/a/b/c/data"
