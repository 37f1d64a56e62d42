from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aegis.detectors._cli import main

KEY = "cli-test-key-0123456789"


@pytest.fixture
def data(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    n = 400
    t = np.arange(n)
    frame = pd.DataFrame(
        {
            "timestamp": 1_700_000_000 + 60 * t,
            "cpu": 0.5 + 0.1 * np.sin(t / 20) + 0.02 * rng.standard_normal(n),
            "mem": 0.4 + 0.02 * rng.standard_normal(n),
        }
    )
    train = tmp_path / "train.csv"
    frame.to_csv(train, index=False)
    test = frame.copy()
    labels = np.zeros(n, dtype=int)
    test.loc[300:320, "cpu"] += 0.5
    labels[300:321] = 1
    test_path = tmp_path / "test.parquet"
    test.to_parquet(test_path, index=False)
    labels_path = tmp_path / "labels.txt"
    labels_path.write_text("\n".join(map(str, labels)) + "\n")
    return {"train": train, "test": test_path, "labels": labels_path, "out": tmp_path / "models"}


def test_train_then_evaluate(
    data: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AEGIS_MODEL_KEY", KEY)
    assert (
        main(["detectors", "train", "--data", str(data["train"]), "--out", str(data["out"])]) == 0
    )
    out, err = capsys.readouterr()
    assert "trained v1 (promoted)" in out
    assert "[1/3] reading" in err and "[2/3] fitting on 400 rows x 2 metrics" in err
    code = main(
        [
            "detectors",
            "evaluate",
            "--model",
            str(data["out"]),
            "--data",
            str(data["test"]),
            "--labels",
            str(data["labels"]),
            "--json",
        ]
    )
    assert code == 0
    import json

    result = json.loads(capsys.readouterr().out)
    assert result["version"] == "v1" and result["rows"] == 400
    assert result["roc_auc"] > 0.9


def test_tampered_model_is_refused_by_evaluate(
    data: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AEGIS_MODEL_KEY", KEY)
    assert (
        main(["detectors", "train", "--data", str(data["train"]), "--out", str(data["out"]), "-q"])
        == 0
    )
    marker = data["out"] / "pwned"

    class Boom:
        def __reduce__(self) -> tuple[object, tuple[Path]]:
            return (Path.touch, (marker,))

    model_file = data["out"] / "versions" / "v1" / "model.joblib"
    model_file.write_bytes(pickle.dumps(Boom()))
    capsys.readouterr()
    code = main(
        [
            "detectors",
            "evaluate",
            "--model",
            str(data["out"]),
            "--data",
            str(data["test"]),
            "--labels",
            str(data["labels"]),
            "-q",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "tampered" in err and "Traceback" not in err
    assert not marker.exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train", "--data", "{missing}", "--out", "{out}"], "does not exist"),
        (
            ["evaluate", "--model", "{out}", "--data", "{test}", "--labels", "{train}"],
            "no promoted model",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(
    data: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    needle: str,
) -> None:
    monkeypatch.setenv("AEGIS_MODEL_KEY", KEY)
    paths = {
        "missing": data["out"] / "nope.csv",
        "out": data["out"],
        "test": data["test"],
        "train": data["train"],
    }
    argv = ["detectors", *(a.format(**paths) for a in args), "-q"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_missing_key_is_exit_2(
    data: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AEGIS_MODEL_KEY", raising=False)
    assert (
        main(["detectors", "train", "--data", str(data["train"]), "--out", str(data["out"]), "-q"])
        == 2
    )
    assert "AEGIS_MODEL_KEY" in capsys.readouterr().err


def test_labels_must_match_rows(
    data: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AEGIS_MODEL_KEY", KEY)
    main(["detectors", "train", "--data", str(data["train"]), "--out", str(data["out"]), "-q"])
    short = data["out"] / "short.txt"
    short.write_text("0\n1\n")
    assert (
        main(
            [
                "detectors",
                "evaluate",
                "--model",
                str(data["out"]),
                "--data",
                str(data["test"]),
                "--labels",
                str(short),
                "-q",
            ]
        )
        == 2
    )
    assert "400 rows of data but 2 labels" in capsys.readouterr().err


def test_aegis_command_runs_detectors_in_a_subprocess(data: dict[str, Path]) -> None:
    env = {**os.environ, "AEGIS_MODEL_KEY": KEY, "OMP_NUM_THREADS": "1"}
    train = subprocess.run(
        [
            sys.executable,
            "-m",
            "aegis.cli",
            "detectors",
            "train",
            "--data",
            str(data["train"]),
            "--out",
            str(data["out"]),
        ],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert train.returncode == 0, train.stderr
    (data["out"] / "versions" / "v1" / "manifest.json").write_text(
        '{"format": "aegis-model/1", "signature": "00"}'
    )
    evaluate = subprocess.run(
        [
            sys.executable,
            "-m",
            "aegis.cli",
            "detectors",
            "evaluate",
            "--model",
            str(data["out"]),
            "--data",
            str(data["test"]),
            "--labels",
            str(data["labels"]),
        ],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert evaluate.returncode == 1
    assert "signature check" in evaluate.stderr and "Traceback" not in evaluate.stderr
