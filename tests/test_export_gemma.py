"""`shootout export` on the embedded Gemma 3 270M: its Q4_K_M GGUF to F16 and a ladder (parity of
weights, KLD, smoke calls, the template check), and GGUF -> Hugging Face folder -> F16 with parity
against transformers. In a module of their own, so that a parallel run can give them their own
worker (about a minute each)."""

from __future__ import annotations

import pytest

from tests.conftest import shootout
from tests.test_export import _manifest


@pytest.mark.slow
def test_embedded_gemma_gguf_to_ladder_kld_order(embedded_gguf, tmp_path):
    # one rung and two KLD prompts: parity of the weights, KLD and smoke on a real model's vocabulary,
    # architecture and template (the ladder's order from a 16-bit source is checked on the tiny model)
    r = shootout("export", str(embedded_gguf), "--out", str(tmp_path), "--name", "gemma3-270m",
                 "--quants", "Q8_0", "--kld-prompts", "2", timeout=1800)
    assert r.returncode == 0, r.stderr
    m = _manifest(tmp_path, "gemma3-270m")
    ver = m["verification"]
    assert ver["parity"]["passed"] and not ver["parity"]["mismatched_tensors"]
    qq = {q: v["mean_kld"] for q, v in ver["quant_quality"].items()}
    # Q8_0 is close to F16 but not equal to it (measured 0.0036 nats over 2 prompts). The source is
    # itself Q4_K_M, so its F16 holds weights already on the Q4_K grid: lower rungs do not keep the
    # order a 16-bit source gives (see README, Export), which is checked on the tiny model.
    assert 0 < qq["Q8_0"] < 0.01
    assert ver["quant_quality"]["Q8_0"]["same_top_pct"] > 90
    assert set(ver["smoke"]) == {"F16", "Q8_0"} and all(s["ok"] for s in ver["smoke"].values())
    assert all(e["template_check"].startswith("equal") for e in m["files"].values())


@pytest.mark.slow
def test_embedded_gemma_gguf_to_hf_folder_and_back_with_parity(embedded_gguf, tmp_path):
    from finetune.gguf_to_hf import gguf_to_hf_folder

    folder = gguf_to_hf_folder(embedded_gguf, tmp_path / "gemma3-270m-hf")
    assert (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))
    # the F16 alone: parity with transformers is what is checked here (no rung, so no KLD)
    r = shootout("export", str(folder), "--out", str(tmp_path / "out"), "--quants", "", "--kld-prompts", "0",
                 "--parity-prompts", "1", timeout=1800)
    assert r.returncode == 0, r.stderr
    m = _manifest(tmp_path / "out", "gemma3-270m-hf")
    assert list(m["files"]) == ["F16"]
    p = m["verification"]["parity"]
    assert p["reference"] == "transformers (float32)" and p["passed"] and p["top1_agreement"] >= 0.99
    assert p["positions"] > 100  # every position of the one prompt asked for
