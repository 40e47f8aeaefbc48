"""One registry mechanism: datasets, backbones, augmentations and export formats are `Registry`s, and
the flags' choices and the config's validation read them, not copied tuples."""

import pytest

from reid_tf import augment, backbones, config, datasets, export_lib
from reid_tf.errors import ReidError
from reid_tf.registry import Registry


def test_a_name_registers_once_and_an_unknown_one_is_one_line_naming_the_flag():
    r = Registry("colour", "--colour")
    r.register("red", 1, help="warm")

    @r.register("blue")
    def blue():
        return 2

    assert r.names() == ("red", "blue") and r.lookup("blue") is blue and r.help() == "red: warm"
    with pytest.raises(ValueError, match="registered twice"):
        r.register("red", 3)
    with pytest.raises(ReidError) as e:
        r.lookup("green")
    assert str(e.value) == "--colour=green: unknown colour; one of red, blue"


@pytest.mark.parametrize("registry", [datasets.REGISTRY, backbones.REGISTRY, augment.AUGMENTATIONS,
                                      export_lib.FORMATS])
def test_each_family_is_a_registry(registry):
    assert isinstance(registry, Registry) and len(registry) >= 4


def test_a_backbone_registered_beside_its_code_is_a_valid_setting_and_a_flag_choice(monkeypatch):
    """The power of 'no copied tuple': one registration is all a new backbone needs to be chosen."""
    monkeypatch.setattr(backbones.REGISTRY, "_entries", dict(backbones.REGISTRY._entries))
    with pytest.raises(config.ConfigError, match="backbone"):
        config.ModelConfig(backbone="scratch_net").validate()
    backbones.REGISTRY.register("scratch_net", backbones.REGISTRY["small"])
    config.ModelConfig(backbone="scratch_net").validate()
    declared = next(s for s in config.SETTINGS["model"] if s.name == "backbone")
    assert "scratch_net" in declared.choices and "scratch_net" in declared.text  # --backbone's enum and --help
