"""JSON schema -> GBNF grammar for llama.cpp, for the schemas tasks use.

Supported: objects whose properties are all required (emitted in the schema's order, so a
reasoning field comes before the score), strings with minLength/maxLength, numbers and integers
with integer minimum/maximum bounds, booleans, enums of strings. Anything else falls back to
llama-cpp-python's converter, with its string rule replaced by a JSON-correct one.

Why not only llama-cpp-python's converter: in 0.3.36 its string rule admits raw control
characters (replies that are not JSON), it ignores minimum/maximum on numbers (a sentiment of
-1.25 passes the grammar and fails the schema), and it orders properties alphabetically unless told.
"""

from __future__ import annotations

import json
import re

# a JSON string character: not a quote, backslash or control character; or an escape (llama.cpp's rule)
CHAR_RULE = r'[^"\\\x7F\x00-\x1F] | [\\] (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'
FRACTION_DIGITS = 6
MAX_ENUMERATED_RANGE = 20


class Unsupported(ValueError):
    pass


def _lit(text: str) -> str:
    return json.dumps(text)  # a GBNF string literal is a JSON string literal


def _nonneg(hi: int, integer: bool) -> str:
    """Numbers in [0, hi]: whole parts 0..hi-1 with any fraction, and hi with a zero fraction."""
    frac = "" if integer else f' ("." [0-9]{{1,{FRACTION_DIGITS}}})?'
    zero_frac = "" if integer else f' ("." "0"{{1,{FRACTION_DIGITS}}})?'
    alts = [f'"{k}"{frac}' for k in range(hi)] + [f'"{hi}"{zero_frac}']
    return "(" + " | ".join(alts) + ")"


def _number(schema: dict, integer: bool) -> str:
    lo, hi = schema.get("minimum"), schema.get("maximum")
    bounded = (isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and float(lo).is_integer()
               and float(hi).is_integer() and lo <= hi and max(abs(lo), abs(hi)) <= MAX_ENUMERATED_RANGE)
    if not bounded:
        if lo is not None or hi is not None:
            raise Unsupported("number bounds other than small whole numbers")
        whole = '("0" | [1-9] [0-9]{0,15})'
        frac = "" if integer else f' ("." [0-9]{{1,{FRACTION_DIGITS}}})?'
        return f'"-"? {whole}{frac}'
    lo, hi = int(lo), int(hi)
    parts = []
    if hi >= 0:
        parts.append(_nonneg(hi, integer) if lo <= 0 else None)
    if lo < 0:
        parts.append('"-" ' + _nonneg(-lo, integer))
    parts = [p for p in parts if p]
    if lo > 0 or hi < 0 or not parts:
        raise Unsupported("number ranges that exclude 0")
    return "(" + " | ".join(parts) + ")"


def _string(schema: dict) -> str:
    lo, hi = int(schema.get("minLength", 0)), schema.get("maxLength")
    rep = f"{{{lo},{int(hi)}}}" if hi is not None else ("*" if lo == 0 else f"{{{lo},}}")
    return f'"\\"" char{rep} "\\""'


class _Builder:
    def __init__(self):
        self.rules: dict[str, str] = {"ws": '" "?', "char": CHAR_RULE}

    def value(self, schema: dict, name: str) -> str:
        if "enum" in schema:
            if not all(isinstance(v, str) for v in schema["enum"]):
                raise Unsupported("non-string enum")
            body = " | ".join(_lit(json.dumps(v)) for v in schema["enum"])
        else:
            t = schema.get("type")
            if t == "object":
                body = self.obj(schema, name)
            elif t == "string":
                if set(schema) - {"type", "minLength", "maxLength", "description", "title"}:
                    raise Unsupported("string keywords")
                body = _string(schema)
            elif t in ("number", "integer"):
                body = _number(schema, t == "integer")
            elif t == "boolean":
                body = '("true" | "false")'
            else:
                raise Unsupported(f"type {t!r}")
        self.rules[name] = body
        return name

    def obj(self, schema: dict, name: str) -> str:
        props = schema.get("properties", {})
        if set(schema.get("required", [])) != set(props) or schema.get("additionalProperties", False) not in (False,):
            raise Unsupported("optional or additional properties")
        items = []
        for key, sub in props.items():
            rule = self.value(sub, f"{name}-{re.sub(r'[^a-zA-Z0-9]+', '-', key)}")
            items.append(f'{_lit(json.dumps(key))} ws ":" ws {rule}')
        inner = ' "," ws '.join(items)
        return f'"{{" ws {inner} ws "}}"' if items else '"{" ws "}"'


def _fallback(schema: dict) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    gbnf = json_schema_to_gbnf(json.dumps(schema), prop_order=list(schema.get("properties", {})))
    return re.sub(r"(?m)^char ::= .*$", lambda _: f"char ::= {CHAR_RULE}", gbnf)


def schema_to_gbnf(schema: dict) -> str:
    b = _Builder()
    try:
        b.value(schema, "root-value")
    except Unsupported:
        return _fallback(schema)
    b.rules["root"] = "root-value ws"
    order = ["root"] + [k for k in b.rules if k != "root"]
    return "\n".join(f"{k} ::= {b.rules[k]}" for k in order) + "\n"
