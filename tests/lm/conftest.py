import pytest

from .corpus import write_corpus


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "corpus.txt")


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path_factory, monkeypatch):
    """datasets' Arrow cache in a temporary directory, for this process and the processes it starts."""
    cache = tmp_path_factory.mktemp("hf-datasets")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    try:
        import datasets.config
    except ImportError:
        return cache
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    return cache
