from recarena import runner
from recarena.base import Recommender
from recarena.testing import parametrize_with_checks
from recarena_ncf import NCF


@parametrize_with_checks([
    NCF(variant="gmf", dim_gmf=8, epochs=15, lr=0.01, batch_size=128),
    NCF(variant="neumf", dim_gmf=8, layers=(16, 8), epochs=10, gmf_epochs=6, mlp_epochs=6, lr=0.02, batch_size=128),
])
def test_conformance(model, check):
    check(model)


def test_refit_repeats_each_stages_early_stopping(tmp_path, recarena_home):
    proto = tmp_path / "synthetic-refit-rank.yaml"
    proto.write_text(
        "name: synthetic-refit-rank\nversion: 1\ndataset: synthetic-3000\ntask: ranking\nfilter: {implicit: true}\n"
        "split: {method: global_random, ratios: [0.8, 0.2], valid_ratio: 0.1, seed: 1}\n"
        "refit: true\nmetrics: [ndcg@10]\nselect: ndcg@10\n"
    )
    # large steps on 3,000 rows: GMF, MLP and NeuMF each peak on validation within a few epochs
    sets = ["dim_gmf=8", "layers=[16, 8]", "epochs=40", "gmf_epochs=40", "mlp_epochs=40", "lr=0.05",
            "batch_size=256", "trainer.logger=none", "trainer.patience=2"]
    s = runner.train("ncf", str(proto), sets=sets, progress=False, log=lambda *a, **k: None)
    refit = Recommender.load(s["artifact"])
    # the refit ran each stage for the epochs its own early stopping chose, not the 40 asked for
    assert refit.epochs == s["best_epoch"] + 1 < 40
    assert 1 <= refit.gmf_epochs < 40 and 1 <= refit.mlp_epochs < 40
    assert set(refit.stage_best_epochs_) == {"gmf", "mlp"}
