"""Tests of simpo_bio.bandit.config: schemes as (name, params), the shorthand parser, the shipped YAML."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import pytest

from simpo_bio.bandit import BanditConfig, SchemeSpec, build_parser, parse_schemes

ROOT = Path(__file__).resolve().parents[2]


def test_parse_schemes_params():
    specs = parse_schemes("linear,linear_neg,linear_neg:eta=0.25,power:p=3", default_eta=2.0)
    assert [s.scheme for s in specs] == ["linear", "linear_neg", "linear_neg", "power"]
    assert specs[1].scheme_params == {"eta": 2.0} and specs[2].scheme_params == {"eta": 0.25}
    assert specs[3].scheme_params == {"p": 3.0}
    assert specs[2].label == "linear_neg:eta=0.25"
    assert specs[1].label == "linear_neg"  # the label is the item as written


def test_scheme_spec_labels_and_validation():
    assert SchemeSpec("linear").label == "linear"
    assert SchemeSpec("linear_neg", {"eta": 1.0}).label == "linear_neg"  # the registry default: no suffix
    assert SchemeSpec("linear_neg", {"eta": 0.5}).label == "linear_neg:eta=0.5"
    assert SchemeSpec("power", {"p": 3}).label == "power:p=3"
    assert SchemeSpec("power", {"p": 3}, label="cubic").label == "cubic"
    assert SchemeSpec("linear_neg", {"eta": 0.5}).build().eta == 0.5
    with pytest.raises(ValueError, match="unknown weighting scheme 'lin'"):
        SchemeSpec("lin").build()
    with pytest.raises(ValueError, match="eta"):
        SchemeSpec("linear_neg", {"eta": -1.0}).build()


def test_config_schemes_any_form_become_name_plus_params():
    short = BanditConfig(schemes="linear,linear_neg:eta=0.5")
    dicts = BanditConfig(schemes=[{"scheme": "linear"}, {"scheme": "linear_neg", "scheme_params": {"eta": 0.5}}])
    specs = BanditConfig(schemes=[SchemeSpec("linear"), SchemeSpec("linear_neg", {"eta": 0.5})])
    for cfg in (short, dicts, specs):
        assert [(s.scheme, s.scheme_params, s.label) for s in cfg.schemes] == [
            ("linear", {}, "linear"), ("linear_neg", {"eta": 0.5}, "linear_neg:eta=0.5")]
        cfg.validate()
    assert [s.label for s in BanditConfig().schemes] == ["linear", "square", "exp", "linear_neg"]
    assert BanditConfig().schemes[3].scheme_params == {"eta": 1.0}
    assert replace(short, seeds=2).schemes == short.schemes
    assert asdict(short)["schemes"][1] == {"scheme": "linear_neg", "scheme_params": {"eta": 0.5},
                                           "label": "linear_neg:eta=0.5"}
    with pytest.raises(ValueError, match="unknown weighting scheme 'bogus'"):
        BanditConfig(schemes="linear,bogus")
    with pytest.raises(ValueError, match="unknown weighting scheme 'bogus'"):
        BanditConfig(schemes=[SchemeSpec("bogus")]).validate()
    with pytest.raises(ValueError, match="no weighting scheme"):
        BanditConfig(schemes=[]).validate()


def test_paper_yaml_is_the_config_defaults():
    parser = build_parser()
    path = ROOT / "configs" / "bandit" / "paper.yaml"
    init = parser.instantiate(parser.parse_args(["--config", str(path)]))
    values = {k: v for k, v in vars(init).items() if k != "config"}
    assert BanditConfig(**values) == BanditConfig()
    # overrides: the shorthand and the YAML list form give the same (name, params) pairs
    for arg in ("linear_neg:eta=0.5,power:p=3",
                "[{scheme: linear_neg, scheme_params: {eta: 0.5}}, {scheme: power, scheme_params: {p: 3}}]"):
        init = parser.instantiate(parser.parse_args(["--config", str(path), "--schemes", arg]))
        cfg = BanditConfig(**{k: v for k, v in vars(init).items() if k != "config"})
        assert [(s.scheme, s.scheme_params) for s in cfg.schemes] == [("linear_neg", {"eta": 0.5}),
                                                                       ("power", {"p": 3.0})]
