"""The trainer settings every torch plugin's fit takes (``--set trainer.K=V``, a protocol's or
a model block's ``trainer:``), and what each may be. Kept apart from :mod:`recarena.torch_model`
so that validating a run's configuration does not import Lightning (seconds of start-up for
every ``recarena`` command and every sweep run of a model that does not train with it)."""

from __future__ import annotations

from recarena.params import Interval, Options

#: Trainer settings a run may pass through (``trainer:`` block of a config)
TRAINER_KEYS = {
    "accelerator": "auto",
    "devices": "auto",
    "strategy": "auto",
    "precision": "32-true",
    "num_nodes": 1,
    "patience": 5,
    "progress_bar": True,
    "logger": "wandb",  # wandb | csv | none
    "wandb_mode": "offline",  # offline | online | disabled
    "wandb_project": "recarena",
    "wandb_group": None,
    "check_val_every_n_epoch": 1,
    "deterministic": False,
    "run_dir": None,  # checkpoints/ and logs/ go here (a temp dir when None)
    "max_time": None,  # "DD:HH:MM:SS"
    # decay of an exponential moving average of the weights, updated every optimizer step
    # (0: off); validation, the best checkpoint and the fitted model then use the average
    "ema": 0.0,
    # largest L2 norm of all gradients together at each optimizer step; larger ones are scaled
    # down to it (0: off). GRU models' remedy for exploding gradients (SVAE's code sets .25, its exploding_clip)
    "gradient_clip": 0.0,
    # epochs over which the learning rate halves: an exponential decay stepped at each epoch's
    # end (0: constant). A noisy curve then settles, and the refit, which trains for the chosen
    # number of epochs, ends on the rate the chosen epoch had
    "lr_halflife": 0.0,
}

#: what each trainer setting may be, checked with the plugin's parameters before any work
TRAINER_CONSTRAINTS = {
    "accelerator": [str], "devices": [Interval(int, 1, None), str, list], "strategy": [str],
    "precision": [str, Interval(int, 16, 64)], "num_nodes": [Interval(int, 1, None)],
    "patience": [Interval(int, 0, None)], "progress_bar": [bool], "logger": [Options("wandb", "csv", "none", False), None],
    "wandb_mode": [Options("offline", "online", "disabled")], "wandb_project": [str], "wandb_group": [str, None],
    "check_val_every_n_epoch": [Interval(int, 1, None)], "deterministic": [bool, Options("warn")],
    "run_dir": [str, None], "max_time": [str, None], "ema": [Interval(float, 0, 1, closed="left")],
    "gradient_clip": [Interval(float, 0, None)], "lr_halflife": [Interval(float, 0, None)],
}
