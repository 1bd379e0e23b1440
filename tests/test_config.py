"""Presets: fractions, extends, overrides, and errors that name the file and key."""

from __future__ import annotations

import pytest

from engine.spec.config import parse_fraction
from engine.spec.errors import ConfigError
from engine.spec.preset_files import load_preset, with_overrides
from tests.conftest import ROOT, TINY_PRESET, write_preset


def test_fractions_are_accepted_wherever_a_float_goes(tiny_preset):
    assert parse_fraction("8/255") == pytest.approx(8 / 255)
    cfg = load_preset(tiny_preset, ["attack.eps=8/255", "attack.step=2/255"])
    assert cfg.attack.eps == pytest.approx(8 / 255)
    assert cfg.attack.step == pytest.approx(2 / 255)


def test_overrides_coerce_types_and_switching_method_resets_its_keys(tiny_preset):
    cfg = load_preset(tiny_preset, ["attack.steps=7", "train.epochs=3", "method.name=trades"])
    assert cfg.attack.steps == 7 and cfg.train.epochs == 3
    assert cfg.method.name == "trades" and cfg.method.beta == 6.0
    cfg2 = with_overrides(cfg, ["method.beta=1"], "x")
    assert cfg2.method.beta == 1.0


def test_every_shipped_preset_loads_with_paper_settings():
    atblr = load_preset(ROOT / "presets" / "mnist_atblr.toml")
    assert atblr.method.name == "atblr" and atblr.method.lam == 0.1
    assert atblr.model.head == "gaussian" and atblr.attack.steps == 40
    assert atblr.attack.eps == 0.3 and atblr.attack.step == 0.01
    assert atblr.data.flip and atblr.data.crop_padding == 2 and atblr.train.epochs == 50
    trades = load_preset(ROOT / "presets" / "mnist_trades.toml")
    assert trades.method.beta == 1.0 and trades.schedule.milestones == [55, 75, 90]
    assert trades.model.arch == "smallcnn" and trades.optim.name == "sgd"
    demo = load_preset(ROOT / "presets" / "demo.toml")
    assert demo.data.dataset == "mnist-5k" and demo.method.name == "atblr"
    for name in ("mnist_standard", "mnist_madry"):
        assert load_preset(ROOT / "presets" / f"{name}.toml").name == name


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        (("[attack]\n", "[attack]\nepsilon = 0.3\n"), ["tiny.toml", "attack.epsilon", "unknown"]),
        (("steps = 2\n", 'steps = "many"\n'), ["tiny.toml", "attack.steps", "'many'"]),
        (("eps = 0.1\n", "eps = -1\n"), ["tiny.toml", "attack.eps", "-1", "greater than"]),
        (('name = "madry"', 'name = "magic"'), ["tiny.toml", "method.name", "atblr"]),
        (('arch = "lenet"', 'arch = "vgg99"'), ["tiny.toml", "model.arch", "smallcnn"]),
        (('name = "madry"', 'name = "atblr"'), ["tiny.toml", "model.head", "gaussian"]),
    ],
)
def test_bad_presets_give_one_line_naming_file_and_key(tmp_path, edit, needles):
    path = write_preset(tmp_path / "tiny.toml", TINY_PRESET.replace(*edit, 1))
    with pytest.raises(ConfigError) as info:
        load_preset(path)
    msg = str(info.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, msg


def test_override_errors_name_the_override(tiny_preset):
    with pytest.raises(ConfigError, match=r"--set attack\.eps=2.*attack\.eps"):
        load_preset(tiny_preset, ["attack.eps=2"])
    with pytest.raises(ConfigError, match=r"attack\.bogus"):
        load_preset(tiny_preset, ["attack.bogus=1"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_preset(tiny_preset, ["attack.eps"])


def test_extends_inherits_and_reports_missing_parent(tmp_path):
    write_preset(tmp_path / "tiny.toml", TINY_PRESET)
    child = write_preset(
        tmp_path / "child.toml", 'name = "child"\nextends = "tiny.toml"\n[attack]\nsteps = 9\n'
    )
    cfg = load_preset(child)
    assert cfg.name == "child" and cfg.attack.steps == 9 and cfg.attack.eps == 0.1
    orphan = write_preset(tmp_path / "orphan.toml", 'name = "o"\nextends = "nope.toml"\n')
    with pytest.raises(ConfigError, match=r"orphan\.toml.*extends.*nope\.toml"):
        load_preset(orphan)
    loop = write_preset(tmp_path / "loop.toml", 'name = "l"\nextends = "loop.toml"\n')
    with pytest.raises(ConfigError, match="circular"):
        load_preset(loop)


def test_unknown_key_in_parent_names_the_parent_file(tmp_path):
    write_preset(tmp_path / "tiny.toml", TINY_PRESET.replace("[train]\n", "[train]\nepochz = 1\n"))
    child = write_preset(tmp_path / "child.toml", 'name = "c"\nextends = "tiny.toml"\n')
    with pytest.raises(ConfigError, match=r"tiny\.toml: key 'train\.epochz'"):
        load_preset(child)


def test_resolved_config_round_trips_through_toml_and_json(tiny_preset, tmp_path):
    from engine.spec.preset_files import from_json

    cfg = load_preset(tiny_preset, ["method.name=atblr", "model.head=gaussian"])
    again = write_preset(tmp_path / "again.toml", cfg.to_toml())
    assert load_preset(again) == cfg
    assert from_json(cfg.to_json()) == cfg
    assert "lambda = 0.1" in cfg.to_toml()


def test_a_foreign_config_and_a_bad_method_table_are_one_line_errors():
    from engine.spec.preset_files import from_json

    cases = {
        "[1, 2]": "expected a table of sections, given list",
        '{"name": "x", "method": "atblr"}': "key 'method': given 'atblr': expected a table",
        '{"name": "x", "method": {"lambda": 1}}': "key 'method.name': required key is missing",
        '{"name": "x", "method": {"name": "madry", "lam": 1}}': (
            "key 'method.lam': unknown key; allowed keys: name, clean_weight"
        ),
        '{"name": "x", "data": {"zz": 1}, "method": {"name": "madry", "lam": 1}}': (
            "key 'data.zz': unknown key"  # the first error in the file's order, then a count
        ),
    }
    for text, needle in cases.items():
        with pytest.raises(ConfigError) as exc:
            from_json(text, "ck.safetensors")
        assert str(exc.value).startswith("ck.safetensors: ") and needle in str(exc.value), text
