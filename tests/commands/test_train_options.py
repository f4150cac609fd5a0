"""train's options are its config's fields (preimage/commands/train.py builds them from TrainConfig)."""

from __future__ import annotations

import dataclasses

from preimage.commands.train import INTERNAL, TRAIN_OPTIONS, train
from preimage.train.training.config import TrainConfig


def test_every_setting_of_a_run_is_an_option_of_train_or_the_trainers_own():
    fields = {spec.name: spec for spec in dataclasses.fields(TrainConfig)}
    assert set(TRAIN_OPTIONS) | set(INTERNAL) == set(fields) and not set(TRAIN_OPTIONS) & set(INTERNAL)
    options = {param.name: param for param in train.params}
    assert set(TRAIN_OPTIONS) <= set(options)
    own = {name: option.default for name, option in options.items() if "default" in TRAIN_OPTIONS.get(name, {})}
    assert own == {"width": 128}  # the one default the command sets itself (the hand-crafted recipe's width)
    for name in set(TRAIN_OPTIONS) - set(own):
        spec, option = fields[name], options[name]
        if not option.required and not option.multiple:
            assert option.default == spec.default, name  # the config's own default
    hidden = {param.opts[0] for param in train.params if getattr(param, "hidden", False)}
    assert hidden == {"--method", "--atoms", "--window", "--sparsity"}  # moved to preimage hoggles
