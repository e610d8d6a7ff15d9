"""The extension points: strategy specs everywhere a strategy is named, plugins through an entry-point
group, register_strategy, and the small objects under them (LabelledPool, bal.validation)."""

from __future__ import annotations

import json
import math
import sys
import textwrap

import numpy as np
import pytest

import bal.selection.strategies as strategies
from bal.cli import main
from bal.errors import ParameterError
from bal.loop.pool import NO_CYCLE, LabelledPool
from bal.selection import check_spec, create_strategy, list_strategies, parse_strategy, register_strategy
from bal.validation import (
    as_generator,
    check_choice,
    check_indices,
    check_int,
    check_k,
    check_logits,
    check_matrix,
    check_real,
    check_seed,
)


# -- specs ---------------------------------------------------------------------------------------
def test_a_spec_is_a_name_and_typed_options():
    assert parse_strategy("bal") == ("bal", {})
    assert parse_strategy(" bal[first=typical, beta=2,addendum=none] ") == (
        "bal", {"first": "typical", "beta": 2, "addendum": None})
    assert parse_strategy("bal-plus[beta=1.5]") == ("bal-plus", {"beta": 1.5})
    for bad in ("bal[beta]", "bal[=2]", "bal[beta=1,beta=2]", "bal beta", "[beta=2]"):
        with pytest.raises(ParameterError, match="strategy"):
            parse_strategy(bad)


def test_create_strategy_reads_a_spec_strictly():
    s = create_strategy("bal[first=typical,beta=2,view=mean]")
    assert (s.name, s.beta, s.first, s.view) == ("bal", 2.0, "typical", "mean")
    # the spec's options win over the keyword ones, which apply to every strategy that takes them
    s = create_strategy("bal[beta=2]", ignore_unknown=True, beta=3.0, sampling="margin", rule="x")
    assert (s.beta, s.sampling) == (2.0, "margin")
    with pytest.raises(ParameterError, match=r"takes no option betta"):
        create_strategy("bal[betta=2]", ignore_unknown=True)  # ignore_unknown is for keyword options only
    with pytest.raises(ParameterError, match=r"unknown strategy 'bol'"):
        check_spec("bol[beta=2]")
    assert check_spec("random") == "random"


@pytest.mark.slow
def test_specs_work_in_train_and_query(tiny_dataset, tmp_path, capsys, make_image_folder):
    datapath, dataset = tiny_dataset
    data = ["--datapath", str(datapath), "--dataset", dataset, "--cache_dir", str(tmp_path / "c"), "--net", "cnn",
            "--no_progress", "--epochs", "1", "--batch_size", "4", "--per_samples_list", "25,25"]
    assert main(["run", *data, "--rotation_epochs", "1", "--strategy", "bal[first=uni,beta=1.5]", "--save",
                 str(tmp_path / "r")]) == 0
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["strategy"]["first"] == "uni" and config["strategy"]["beta"] == 1.5
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["train", *data, "--strategy", "bal[frist=uni]", "--save", str(tmp_path / "x")])
    assert "takes no option frist" in capsys.readouterr().err
    photos = make_image_folder(tmp_path / "photos", ["a", "b"], 6, splits=("x",))
    assert main(["project", "init", str(tmp_path / "p"), "--images", str(photos), "--classes", "a,b",
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["query", str(tmp_path / "p"), "--budget", "2", "--strategy", "bal[first=low1st,beta=2]",
                 "--pretext-epochs", "1", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "strategy: bal[" in err and "first=low1st" in err and "beta=2" in err


# -- register_strategy and plugins ---------------------------------------------------------------
def test_register_strategy_adds_a_name_once():
    @register_strategy("every-other")
    def every_other(*, step: int = 2):
        class EveryOther(strategies.Strategy):
            name = "every-other"

            def select_with_model(self, ctx):
                return ctx.unlabelled[::step][: ctx.k], {"rule": "every other"}

        return EveryOther()

    try:
        assert "every-other" in list_strategies()
        assert strategies.strategy_options("every-other") == {"step": 2}
        assert create_strategy("every-other[step=3]").name == "every-other"
        with pytest.raises(ValueError, match="registered twice"):
            register_strategy("every-other")(every_other)
    finally:
        strategies._STRATEGIES.remove("every-other")
    assert "every-other" not in list_strategies()


def test_an_installed_plugin_reaches_the_command_line(tmp_path, monkeypatch, capsys):
    """A package that declares an entry point in the group bal.strategies: bal's CLI lists and runs its
    strategy; one whose import fails is a warning, not a crash."""
    (tmp_path / "bal_plugin_demo.py").write_text(textwrap.dedent('''
        from bal.selection import register_strategy
        from bal.selection.strategies import RandomStrategy

        @register_strategy("plugin-random")
        class PluginRandom(RandomStrategy):
            name = "plugin-random"
    '''))
    dist = tmp_path / "bal_plugin_demo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bal-plugin-demo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[bal.strategies]\ndemo = bal_plugin_demo\nbroken = no_such_module\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(strategies, "_plugins_loaded", False)
    try:
        assert "plugin-random" in list_strategies()
        assert check_spec("plugin-random") == "plugin-random"
        capsys.readouterr()
        with pytest.raises(SystemExit) as shown:
            main(["train", "--help"])
        help_text = " ".join(capsys.readouterr().out.replace("-\n", "-").split())  # argparse wraps at hyphens
        assert shown.value.code == 0 and "plugin-random" in help_text.replace("- ", "-")
    finally:
        strategies._STRATEGIES.remove("plugin-random")
        sys.modules.pop("bal_plugin_demo", None)


# -- LabelledPool ------------------------------------------------------------------------------
def test_labelled_pool_records_order_and_cycle_and_round_trips():
    pool = LabelledPool(6)
    pool.label([4, 1])  # before any cycle (class folders)
    pool.label([0], cycle=0)
    pool.label([5, 2], cycle=1)
    assert pool.order.tolist() == [4, 1, 0, 5, 2] and pool.n_labelled == 5 and len(pool) == 6
    assert pool.unlabelled().tolist() == [3]
    assert pool.cycle_of.tolist() == [0, NO_CYCLE, 1, -2, NO_CYCLE, 1]
    assert pool.labelled_in(1).tolist() == [5, 2] and pool.labelled_in(NO_CYCLE).tolist() == [4, 1]
    with pytest.raises(ValueError):
        pool.labelled[0] = False  # a read-only view
    state = json.loads(json.dumps(pool.state_dict()))
    again = LabelledPool.from_state_dict(state)
    assert again.state_dict() == pool.state_dict() and again.labelled.tolist() == pool.labelled.tolist()
    for bad in ([3, 3], [0], [6], [-1]):
        with pytest.raises(ParameterError):
            pool.label(bad, cycle=2)
    assert pool.n_labelled == 5  # all or nothing
    with pytest.raises(ParameterError, match="pool of 6"):
        LabelledPool(7).load_state_dict(state)
    with pytest.raises(ParameterError, match="one cycle"):
        LabelledPool(6).load_state_dict({**state, "cycles": [0]})


# -- bal.validation ------------------------------------------------------------------------------
def test_every_check_names_its_parameter_and_refuses_what_it_must():
    assert check_int("n", np.int64(3), 1, 5) == 3
    for bad in (True, 2.0, "2", 0, 6):
        with pytest.raises(ParameterError, match=r"^n "):
            check_int("n", bad, 1, 5)
    assert check_real("lr", 1, low=0, low_open=True) == 1.0
    for bad in (0, math.nan, math.inf, "1", False, 2):
        with pytest.raises(ParameterError, match=r"^lr "):
            check_real("lr", bad, low=0, low_open=True, high=1)
    assert check_choice("mode", "a", ["a", "b"]) == "a"
    with pytest.raises(ParameterError, match="one of a, b"):
        check_choice("mode", "c", ["a", "b"])
    assert check_seed("seed", 2**32 - 1) == 2**32 - 1
    with pytest.raises(ParameterError):
        check_seed("seed", 2**32)
    assert as_generator(3, "x").integers(10) == np.random.default_rng(3).integers(10)
    with pytest.raises(ParameterError, match="is random"):
        as_generator(None, "the rule")
    assert check_matrix("f", [[1, 2]]).dtype == np.float64
    for bad in ([1, 2], [[]], [[np.nan]], [["a"]]):
        with pytest.raises(ParameterError, match=r"^f "):
            check_matrix("f", np.array(bad))
    with pytest.raises(ParameterError, match="2 columns"):
        check_logits("z", [[1.0]])
    with pytest.raises(ParameterError, match="no rows"):
        check_logits("z", np.zeros((0, 3)))
    assert check_indices("i", [2, 0], 3).tolist() == [2, 0]
    for bad in ([3], [-1], [1, 1], [0.5], [[1]]):
        with pytest.raises(ParameterError, match=r"^i "):
            check_indices("i", np.array(bad), 3)
    assert check_indices("i", [1, 1], 3, unique=False).tolist() == [1, 1]
    assert check_k(2, 2, "unlabelled images") == 2
    with pytest.raises(ParameterError, match="unlabelled images"):
        check_k(3, 2, "unlabelled images")
