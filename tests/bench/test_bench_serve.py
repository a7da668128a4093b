"""`unetkit bench serve`: a real server on loopback under concurrent predict requests."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from unetkit.cli import app

KEYS = {"requests", "clients", "image_size", "errors", "first_errors", "p50_ms", "p95_ms",
        "max_ms", "requests_per_s", "wall_s", "endpoint", "model", "cpu"}


def test_bench_serve_small_run_has_no_errors(tmp_path):
    result = CliRunner().invoke(app, ["bench", "serve", "--requests", "20", "--clients", "4",
                                      "--size", "32", "--json", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout[result.stdout.index("{"):])
    written = json.loads((tmp_path / "bench_serve.json").read_text())
    assert printed == written and set(written) == KEYS
    assert written["errors"] == 0 and written["first_errors"] == []
    assert (written["requests"], written["clients"], written["image_size"]) == (20, 4, 32)
    assert 0 < written["p50_ms"] <= written["p95_ms"] <= written["max_ms"]
    assert written["requests_per_s"] > 0


def test_bench_serve_flags_checked():
    result = CliRunner().invoke(app, ["bench", "serve", "--clients", "0"])
    assert result.exit_code == 2 and "--clients must be at least 1" in result.output
