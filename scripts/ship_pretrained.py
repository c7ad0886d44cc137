"""Train the quick-profile models that fmlbd ships (seed 0) and write them to fmlbd/pretrained/.

    .venv/bin/python scripts/ship_pretrained.py [results_dir]

Ships the benign federation of cases (a)/(c) and (b), the defended (features-only) federation
of both, and the benign federation under each server-side rule of notebook 06
(``fmlbd.experiments.server.RULES``), each trained from scratch (``shipped_models=false``; a model
already in the results folder's cache is reused), two side by side. Each file holds the federation state, the training log,
the config and the code's :func:`fmlbd.fingerprint.reference_trace`: ``tests/test_pretrained.py`` fails when the
current code would train something else. Rerun this after such a change. ``fmlbd/pretrained/SHA256SUMS``
lists every file's SHA-256; fmlbd refuses a shipped model that does not match it.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fmlbd.config import load_config, with_overrides  # noqa: E402
from fmlbd.experiments.defense import defended_config  # noqa: E402
from fmlbd.experiments.server import RULES  # noqa: E402
from fmlbd.fingerprint import reference_trace  # noqa: E402
from fmlbd.pipeline import pretrain  # noqa: E402
from fmlbd.shipped import SHIPPED, model_key, shipped_name, write_shipped_sums  # noqa: E402
from fmlbd.results import atomic_torch_save, load_torch  # noqa: E402
from fmlbd.workers import pretrain_cases  # noqa: E402

CASES = ("a", "b")

if __name__ == "__main__":
    results = sys.argv[1] if len(sys.argv) > 1 else "results"
    cfg = load_config("quick", {"results_dir": results, "shipped_models": False})
    configs = [cfg, defended_config(cfg)] + [with_overrides(cfg, {"federation.aggregation": rule})
                                             for rule in RULES if rule != "mean"]
    for c in configs:
        pretrain_cases(c, CASES)
    for c in configs:
        for case in CASES:
            trained = pretrain(c, case)
            saved = load_torch(trained.path / "final.pt")
            config = c.to_dict() | {"case": case, "shipped_models": True, "results_dir": "results"}
            out = SHIPPED / shipped_name(config, model_key(c, trained.scenario))
            atomic_torch_save({**saved, "trace": reference_trace(c, case), "config": config}, out)
            print(f"shipped {out} ({out.stat().st_size / 1e6:.1f} MB): {c.meta.algorithm}, "
                  f"{c.federation.aggregation}, case ({case})")
    write_shipped_sums()  # the SHA-256 of each, checked before a shipped model is loaded
