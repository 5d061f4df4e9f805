"""A small generated text for the language-model tests (no test downloads anything)."""
import random

WORDS = ("the cat sat on a mat and dog ran to big red house with small blue door in old town near river "
         "under bright moon").split()


def write_corpus(path, paragraphs: int = 120, seed: int = 0):
    """A text file of ``paragraphs`` blank-line separated paragraphs of 5-40 words (about 100 bytes each)."""
    rng = random.Random(seed)
    text = "\n\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))) + "."
                       for _ in range(paragraphs))
    path.write_text(text + "\n")
    return path
