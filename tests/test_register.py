"""`shootout register`: new entries appear, every original line of a commented config stays."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ROOT, shootout


def _ladder(folder: Path) -> list[Path]:
    folder.mkdir()
    files = [folder / f"mymodel.{q}.gguf" for q in ("F16", "Q8_0", "Q4_K_M")]
    for f in files:
        f.write_bytes(b"GGUF")
    return files


def _is_subsequence(old: list[str], new: list[str]) -> bool:
    it = iter(new)
    return all(line in it for line in old)


def test_register_ladder_keeps_every_original_line(tmp_path):
    config = tmp_path / "config.yaml"
    original = (ROOT / "config.yaml").read_text().replace("demo/models/", str(ROOT / "demo" / "models") + "/")
    config.write_text(original)
    _ladder(tmp_path / "ladder")
    res = shootout("register", str(tmp_path / "ladder"), "-c", str(config), "--chat-template", "gemma",
                   env_extra={"COLUMNS": "200"}, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    new = config.read_text()
    old_lines, new_lines = original.splitlines(), new.splitlines()
    assert _is_subsequence(old_lines, new_lines)  # every line kept, in order, comments included
    added = new_lines.copy()
    for line in old_lines:
        added.remove(line)
    assert sum(l.strip().startswith("- name:") for l in added) == 3
    assert "  - name: mymodel-q4_k_m" in added and "    path: ladder/mymodel.Q4_K_M.gguf" in added
    assert "    quant: Q8_0" in added and "    family: mymodel" in added
    assert "added 3 model(s)" in res.stdout
    # registering again is refused, and the file is left alone
    again = shootout("register", str(tmp_path / "ladder" / "mymodel.F16.gguf"), "-c", str(config), cwd=tmp_path)
    assert again.returncode == 2 and "already registered" in again.stderr and "Traceback" not in again.stderr
    assert config.read_text() == new


def test_dry_run_prints_the_diff_and_writes_nothing(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("# my models\nmodels:\n  - name: a   # the first\n    tag: a:1\n    backend: ollama\n"
                      "    family: f\n    quant: Q4_0\n")
    before = config.read_text()
    res = shootout("register", "llama3.1:8b", "-c", str(config), "--backend", "ollama", "--family", "llama3.1-8b",
                   "--quant", "Q4_K_M", "--dry-run")
    assert res.returncode == 0, res.stderr
    assert config.read_text() == before
    assert "+  - name: llama3.1:8b" in res.stdout and "+    tag: llama3.1:8b" in res.stdout
    assert "would add 1 model(s)" in res.stdout


def test_unknown_quant_in_file_name_asks_for_it(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("models:\n  - {name: a, backend: ollama, tag: a, family: f, quant: Q4_0}\n")
    (tmp_path / "weird.gguf").write_bytes(b"GGUF")
    res = shootout("register", str(tmp_path / "weird.gguf"), "-c", str(config))
    assert res.returncode == 2 and "--quant" in res.stderr
