"""The bench's typed row and the dict results.json stores."""

from zoo.row import BenchRow
from zoo.settings import BenchSettings
from zoo.spec import BackboneSpec

SPEC = BackboneSpec(
    name="net", family="test", source="custom", reference="net", input_size=32,
    preprocessing="unit", feature_dim=8, params=840, plugin="tests",
)


def test_a_started_row_is_a_failed_row_naming_the_backbone_and_its_settings():
    settings = BenchSettings.from_config(epochs=3, weights="none")
    row = BenchRow.start(SPEC, settings, "abc123").to_dict()
    assert list(row)[:10] == [
        "backbone", "family", "source", "plugin", "input_size", "params",
        "weights", "weights_note", "status", "error",
    ]
    assert row["backbone"] == "net" and row["plugin"] == "tests" and row["params"] == 840
    assert row["status"] == "failed" and row["top1"] is None
    assert row["weights"] == "" and row["weights_mode"] == "none"  # it got none yet; --weights asked for none
    assert row["epochs"] == 3 and row["mirror"] == settings.mirror and row["cache"] is True
    assert row["settings_fingerprint"] == "abc123" and "settings" not in row


def test_measurements_land_under_their_keys_beside_the_weights_mode():
    row = BenchRow.start(SPEC, BenchSettings.from_config(), "f")
    row.weights, row.top1, row.status = "random", 0.5, "ok"
    row.finish(1.5)
    saved = row.to_dict()
    assert saved["weights"] == "random" and saved["top1"] == 0.5 and saved["status"] == "ok"
    assert saved["weights_mode"] == "auto"
    assert saved["total_seconds"] == 1.5 and saved["finished_at"][:2] == "20"
    assert list(saved)[-2:] == ["total_seconds", "finished_at"]
