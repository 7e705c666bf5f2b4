"""The claims harness itself (tiny settings, seconds): statistics, result records, the registry, the CLI.
The claims' own numbers are reproduced by the slow tests in tests/test_claims_slow.py."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from dendrix.analysis.claims import ClaimResult, claim_names, paired, run_claim, summarize, verdict
from dendrix.analysis.claims.fsdd import rebin, train_fsdd_mlp
from dendrix.analysis.claims.stats import t_quantile_975

ROOT = Path(__file__).resolve().parents[1]


def test_summary_mean_std_and_t_interval():
    s = summarize([1.0, 2.0, 3.0, 4.0, 5.0])
    assert s.n == 5 and s.mean == 3.0 and math.isclose(s.std, math.sqrt(2.5))
    half = 2.776 * math.sqrt(2.5) / math.sqrt(5)  # t_{0.975, 4}
    assert math.isclose(s.low, 3 - half) and math.isclose(s.high, 3 + half)
    assert "3.000 ± 1.581" in s.text() and "(n = 5)" in s.text()
    one = summarize([0.7])
    assert one.std == 0 and one.low == one.high == 0.7


def test_t_quantiles_and_bad_inputs():
    assert t_quantile_975(1) == 12.706 and t_quantile_975(30) == 2.042 and t_quantile_975(100) == 1.96
    with pytest.raises(ValueError, match="df"):
        t_quantile_975(0)
    with pytest.raises(ValueError, match="values"):
        summarize([])
    with pytest.raises(ValueError, match="values"):
        summarize([1.0, float("nan")])
    with pytest.raises(ValueError, match="equal length"):
        paired([1.0, 2.0], [1.0])


def test_paired_sign_flip_test_is_exact():
    # five positive differences: only the all-plus and all-minus sign patterns reach |mean|: p = 2/32
    p = paired([2.0, 3.0, 4.0, 5.0, 6.0], [1.0, 1.0, 1.0, 1.0, 1.0])
    assert p.p_value == pytest.approx(2 / 32) and p.wins == 5 and p.difference.mean == 3.0
    same = paired([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert same.p_value == 1.0 and same.wins == 0


def test_verdict_and_result_record(tmp_path):
    assert verdict(True, True) == "yes" and verdict(False, False) == "no" and verdict(True, False) == "partly"
    r = ClaimResult("x", "paper", "claim", "m", "partly", 5, values={"a": 1})
    path = r.save(tmp_path)
    assert json.loads(path.read_text())["holds"] == "partly"
    with pytest.raises(ValueError, match="holds"):
        ClaimResult("x", "p", "c", "m", "maybe", 1)


def test_registry_lists_every_paper_claim_and_rejects_unknown_names():
    names = claim_names()
    for name in ("dlif_xor", "dlif_theorem1", "dlif_theorem2", "dlif_energy", "dgn_variance", "dgn_robustness",
                 "drf_sparsity", "drf_speedup", "mmdend_ssf", "mmdend_params", "dalif_few_steps"):
        assert name in names
    with pytest.raises(ValueError, match="claim must be one of"):
        run_claim("no_such_claim")
    with pytest.raises(ValueError, match="seeds"):
        run_claim("mmdend_params", seeds=0)


@pytest.mark.parametrize("name", ["mmdend_params", "mmdend_ssf", "drf_sparsity", "dgn_variance", "dlif_energy"])
def test_quick_claims_run_and_record_their_seeds(name):
    r = run_claim(name, seeds=1, quick=True)
    assert r.name == name and r.holds in ("yes", "no", "partly") and r.measurement
    json.dumps(r.to_dict(), default=float)  # JSON-able
    if name == "mmdend_params":
        assert len(set(r.values["counts"].values())) == 1
    if name == "mmdend_ssf":
        assert r.values["exact"]["mean"] == 1.0
    if name == "dlif_energy":
        # the pair term grows with the input rate (∝ r²)
        assert r.values["linear 64→32 @ 0.2"]["mean"] > r.values["linear 64→32 @ 0.05"]["mean"]


def test_rebin_pools_spikes_into_fewer_steps():
    x = torch.zeros(10, 1, 2)
    x[3, 0, 0] = 1
    x[9, 0, 1] = 1
    y = rebin(x, 4)  # width 3, padded to 12
    assert y.shape == (4, 1, 2) and y[1, 0, 0] == 1 and y[3, 0, 1] == 1 and y.sum() == 2
    with pytest.raises(ValueError, match="time_steps"):
        rebin(x, 11)


def test_short_fsdd_training_uses_registry_defaults():
    x = (torch.rand(8, 16, 64) < 0.1).float()
    y = torch.arange(16) % 10
    run = train_fsdd_mlp("lif", 0, epochs=1, hidden=8, data=(x, y, x, y), time_steps=4)
    assert 0.0 <= run.test_accuracy <= 1.0 and run.model.kind == "lif"


def test_cli_quick_claim_writes_json(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("claims_cli", ROOT / "benchmarks" / "claims.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    assert cli.main(["--claim", "mmdend_params", "--seeds", "1", "--quick", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "mmdend_params.json").read_text())
    assert data["holds"] in ("yes", "no", "partly") and "benchmarks/claims.py" in data["settings"]["command"]
    assert "| mmdend_params |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["--claim", "nope", "--out", str(tmp_path)])
