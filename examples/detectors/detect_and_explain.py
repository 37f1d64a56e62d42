"""Detect, explain and classify failures on synthetic service metrics, then persist the model.

Run: ``.venv/bin/python examples/detectors/detect_and_explain.py``

1. Generate a timeline of normal operation and train the default anomaly detector on it.
2. Train the failure classifier out of the box on the scenario generator.
3. Score a new timeline with incidents: print the first finding of every incident, with its
   severity, failure type, recommended action and the metrics that explain it.
4. Save the detector into a signed model registry and load it back (verified first).
"""

from __future__ import annotations

import os
import tempfile

from aegis.detectors import (
    ActionMapping,
    AnomalyDetector,
    FailureClassifier,
    MetricsDetector,
    ModelRegistry,
    generate_scenarios,
)


def main() -> None:
    history, _ = generate_scenarios(0, seed=1)  # two days of normal operation, one row a minute
    classifier = FailureClassifier.from_scenarios(20, seed=2)
    detector = MetricsDetector(
        "checkout-api",
        anomaly=AnomalyDetector(),
        classifier=classifier,
        actions=ActionMapping.from_config({"memory_leak": "restart_deployment"}),
        target={"namespace": "shop", "deployment": "checkout-api"},
    ).fit(history)

    live, truth = generate_scenarios(5, seed=7)
    findings = detector.score(live)
    labels = truth.tolist()
    row = 0
    while row < len(labels):
        if labels[row] == "normal":
            row += 1
            continue
        start = row
        while row < len(labels) and labels[row] == labels[start]:
            row += 1
        first = next((i for i in range(start, row) if findings[i].is_anomaly), None)
        print(f"{live.index[start]:%H:%M} incident: {labels[start]} ({row - start} min)")
        if first is None:
            print("       missed")
            continue
        f = findings[first]
        action = f.action.to_dict() if f.action else None
        top = ", ".join(f"{c.feature} ({c.contribution:.1f})" for c in f.top_metrics)
        print(
            f"       detected after {first - start} min as {f.failure_type or 'anomaly'}: "
            f"severity={f.severity} confidence={f.confidence:.2f}\n"
            f"       action={action}\n       top metrics: {top}"
        )
    # Rows just after an incident still have it inside their trailing windows; count false
    # alarms only on normal rows at least `window` rows past the end of an incident.
    window = detector.anomaly.window
    calm = [
        i
        for i in range(len(labels))
        if all(label == "normal" for label in labels[max(0, i - window) : i + 1])
    ]
    false_alarms = sum(1 for i in calm if findings[i].is_anomaly)
    print(f"false alarms on calm normal rows: {false_alarms} of {len(calm)}")

    with tempfile.TemporaryDirectory() as folder:
        key = os.environ.get("AEGIS_MODEL_KEY", "example-key-please-change-me")
        registry = ModelRegistry(folder, key=key)
        version = registry.register(detector.anomaly, training_data=history, promote=True)
        restored = registry.load()
        print(f"saved {version}; reloaded {type(restored).__name__} after verifying its signature")


if __name__ == "__main__":
    main()
