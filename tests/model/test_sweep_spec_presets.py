"""The MQAR sweep specs name a preset plus overrides, and a run's fingerprint hashes that spec, not the model it
resolves to. So a change to a preset (or to a default it relies on) would silently change what the committed
results in benchmarks/results/*_sweep.json mean while the sweep still counts them as done."""
import json
from pathlib import Path

import pytest

from ramnet.config import RamNetConfig

yaml = pytest.importorskip("yaml")

RESULTS = Path(__file__).parents[2] / "benchmarks" / "results"
SPECS = Path(__file__).parents[2] / "benchmarks" / "mqar"


@pytest.mark.parametrize("name, spec", [("mqar", "main.yaml"), ("ablations", "ablations.yaml"),
                                        ("mqar_paper_arch", "paper_arch.yaml")])
def test_committed_results_still_resolve_to_the_config_they_ran(name, spec):
    """Every committed result whose run is still in its spec (same fingerprint) records the RAM-Net config that
    the spec resolves to today. If this fails after a preset or default change, pin the changed fields in the
    specs' overrides and raise ramnet.sweep_spec.HARNESS_VERSION (or revert the change)."""
    path = RESULTS / f"{name}_sweep.json"
    if not path.is_file():
        pytest.skip(f"{path.name} is not committed")
    # the raw spec: load_spec also builds every model, and the fla baselines need fla, which CI does not have
    entries = {e["label"]: e for e in yaml.safe_load((SPECS / spec).read_text())["models"]}
    checked = 0
    for result in json.loads(path.read_text())["runs"]:
        entry = entries.get(result["label"])
        if entry is None or entry["model"] != "ramnet":
            continue
        today = RamNetConfig.from_name(entry.get("preset", "mqar-small"), **entry.get("overrides", {}))
        recorded = {k: v for k, v in result["config"].items() if k in today.to_dict()}
        assert recorded == {k: today.to_dict()[k] for k in recorded}, result["id"]
        checked += 1
    assert checked > 0
