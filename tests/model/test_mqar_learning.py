"""End-to-end learning on CPU: mqar-tiny reaches >= 0.9 MQAR accuracy on the CI recipe within minutes."""
import time

import pytest

from ramnet import RamNetConfig
from ramnet.train import TrainArgs, train_mqar
from ramnet.train_recipes import CI_MQAR_RECIPE


@pytest.mark.slow
def test_mqar_tiny_learns_associative_recall():
    recipe = CI_MQAR_RECIPE
    start = time.perf_counter()
    metrics = train_mqar(RamNetConfig.from_name(recipe.preset), recipe.setting, TrainArgs(**recipe.train_kwargs),
                         progress=False)
    seconds = time.perf_counter() - start
    print(f"MQAR {recipe.setting}: accuracy {metrics['final_accuracy']:.3f} after {metrics['steps_run']} steps, "
          f"{seconds:.0f} s")
    # the time budget is held by the recipe's step cap (600 steps, about 2 minutes on 2 cores), not by a timer
    assert metrics["final_accuracy"] >= 0.9
