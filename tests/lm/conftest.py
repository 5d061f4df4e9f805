import random

import pytest

WORDS = ("the cat sat on a mat and dog ran to big red house with small blue door in old town near river "
         "under bright moon").split()


def write_corpus(path, paragraphs: int = 120, seed: int = 0):
    """A text file of ``paragraphs`` blank-line separated paragraphs of 5-40 words (about 100 bytes each)."""
    rng = random.Random(seed)
    text = "\n\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))) + "."
                       for _ in range(paragraphs))
    path.write_text(text + "\n")
    return path


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
