"""RecBole 1.2.1's model zoo as RecArena contestants: ``recbole/<Model>``.

The listing is static data (no import of RecBole or torch: discovery runs it every time
plugins are listed); a model's class is made on first use, by :func:`__getattr__`, so the
entry point ``recarena_recbole.zoo:BPR`` imports like any other plugin class and a saved
``recbole/BPR`` loads back through the same name.
"""

from __future__ import annotations

#: RecBole's model type -> its models, as RecBole 1.2.1's ``recbole.model`` packages list them
ZOO: dict[str, tuple[str, ...]] = {
    "general": (
        "ADMMSLIM", "AsymKNN", "BPR", "CDAE", "ConvNCF", "DGCF", "DMF", "DiffRec", "EASE", "ENMF",
        "FISM", "GCMC", "ItemKNN", "LDiffRec", "LINE", "LightGCN", "MacridVAE", "MultiDAE", "MultiVAE",
        "NAIS", "NCEPLRec", "NCL", "NGCF", "NNCF", "NeuMF", "Pop", "RaCT", "Random", "RecVAE", "SGL",
        "SLIMElastic", "SimpleX", "SpectralCF",
    ),
    "sequential": (
        "BERT4Rec", "CORE", "Caser", "DIEN", "DIN", "FDSA", "FEARec", "FOSSIL", "FPMC", "GCSAN",
        "GRU4Rec", "GRU4RecCPR", "GRU4RecF", "GRU4RecKG", "HGN", "HRM", "KSR", "LightSANs", "NARM",
        "NPE", "NextItNet", "RepeatNet", "S3Rec", "SASRec", "SASRecCPR", "SASRecF", "SHAN", "SINE",
        "SRGNN", "STAMP", "TransRec",
    ),
    "context": (
        "AFM", "AutoInt", "DCN", "DCNV2", "DSSM", "DeepFM", "EulerNet", "FFM", "FM", "FNN", "FiGNN",
        "FwFM", "KD_DAGFM", "LR", "NFM", "PNN", "WideDeep", "xDeepFM",
    ),
    "knowledge": ("CFKG", "CKE", "KGAT", "KGCN", "KGIN", "KGNNLS", "KTUP", "MCCLK", "MKR", "RippleNet"),
    "decisiontree": ("LightGBM", "XGBOOST"),
}

#: RecBole model type -> the RecArena task it competes in
TASK_OF = {"general": "ranking", "sequential": "sequential", "context": "ctr", "knowledge": "ranking",
           "decisiontree": "ctr"}

#: why RecArena cannot run a model on any of its protocols (refused by ``fit`` before work)
UNRUNNABLE = {
    **{m: "it needs a knowledge graph (RecBole's .kg and .link atomic files), which no RecArena dataset "
          "provides" for m in ZOO["knowledge"]},
    "GRU4RecKG": "it needs pretrained knowledge-graph entity embeddings (RecBole's .ent file)",
    "KSR": "it needs a knowledge graph (RecBole's .kg, .link and .ent files)",
    "LightGBM": "RecBole runs it through the lightgbm package's own trainer on files, not a torch model",
    "XGBOOST": "RecBole runs it through the xgboost package's own trainer on files, not a torch model",
    "DIN": "it is a click-through model over sequences (labelled rows with a history), a task no RecArena "
           "protocol defines",
    "DIEN": "it is a click-through model over sequences (labelled rows with a history), a task no RecArena "
            "protocol defines",
}

#: models whose scoring graph traces to ONNX with parity (measured by ``just recbole-zoo``;
#: each is also served by the export test)
EXPORTS: frozenset[str] = frozenset({
    "AFM", "AutoInt", "BPR", "Caser", "CDAE", "CORE", "DCN", "DCNV2", "DeepFM", "DGCF", "DMF",
    "DSSM", "ENMF", "EulerNet", "FFM", "FiGNN", "FM", "FNN", "FOSSIL", "FPMC", "FwFM", "GRU4Rec",
    "GRU4RecF", "HGN", "KD_DAGFM", "LightGCN", "LightSANs", "LINE", "LR", "MacridVAE", "MultiDAE",
    "MultiVAE", "NARM", "NCEPLRec", "NCL", "NeuMF", "NextItNet", "NFM", "NGCF", "NNCF", "NPE",
    "PNN", "RaCT", "RecVAE", "RepeatNet", "SASRec", "SASRecF", "SGL", "SimpleX", "SINE",
    "SpectralCF", "STAMP", "TransRec", "WideDeep", "xDeepFM"
})

MODEL_TYPE = {m: kind for kind, names in ZOO.items() for m in names}


def models() -> dict[str, str]:
    """``{model: "module:Class"}`` for every RecBole model (the provider entry point)."""
    return {m: f"{__name__}:{m}" for m in MODEL_TYPE}


def __getattr__(name: str):
    if name not in MODEL_TYPE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from recarena_recbole.adapter import make_class

    cls = make_class(name, MODEL_TYPE[name], __name__)
    globals()[name] = cls
    return cls
