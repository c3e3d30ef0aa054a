"""zoo's contract check on the installed plugin (build at 64 px: the check, not the accuracy)."""

from zoo.testing import check_plugin


def test_densenet_meets_the_zoo_contract():
    specs = check_plugin("densenet", input_size=64)
    assert [spec.name for spec in specs] == ["densenet121"]
