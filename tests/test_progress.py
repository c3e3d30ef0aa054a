"""The one progress callback type, and naming many things' steps on one display."""

from zoo.progress import no_progress, prefixed


def test_prefixed_names_every_step_and_passes_the_counts_on():
    seen = []
    report = prefixed(lambda *step: seen.append(step), "mobilenet_v2")
    report("head epochs", 3, 20)
    report("latency", 0, 0)
    assert seen == [("mobilenet_v2: head epochs", 3, 20), ("mobilenet_v2: latency", 0, 0)]
    assert no_progress("anything", 1, 2) is None
