"""A small evaluator for the part of Go's text/template that Ollama chat templates use.

Ollama renders a Modelfile's TEMPLATE with Go's text/template. To check, without Go or Ollama,
that the TEMPLATE we write produces the same prompt as a GGUF's own Jinja chat template, this
module evaluates: text with ``{{- -}}`` trim markers, comments, ``if / else if / else / end``,
``range`` (with ``$i, $m :=``, ``break`` and ``continue``), ``$x := ...`` and ``$x = ...``, fields
(``.Role``, ``$.System``, ``$m.Content``), string/number/bool literals, parentheses, pipes, the
built-in functions ``eq ne lt le gt ge and or not len slice index print printf`` and Ollama's
``json`` (template/template.go adds it). Truthiness follows Go: false, 0, "", nil and empty
collections are false. Anything else is a :class:`GoTemplateError`. Ollama's official templates
(template/*.gotmpl in its repository) render here as with Go: tests/fixtures/ollama_prompts/
regenerate.py checks both on them, and the tests compare both on templates of ours.

Over 400 lines: one interpreter of one language (its parser, expression evaluator and built-in
functions share private node and scope types); split, its parts would only import each other.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field


class GoTemplateError(ValueError):
    pass


_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)


# ---------------------------------------------------------------- parsing into a tree

@dataclass
class _Text:
    text: str


@dataclass
class _Action:
    expr: str


@dataclass
class _If:
    branches: list = field(default_factory=list)  # [(expr or None for else, [nodes])]


@dataclass
class _Loop:
    word: str  # "break" or "continue"


class _LoopSignal(Exception):
    def __init__(self, word: str):
        self.word = word


@dataclass
class _Range:
    keyvar: str | None
    valvar: str | None
    expr: str
    body: list = field(default_factory=list)
    else_body: list | None = None


def _segments(src: str):
    """Yield ('text', s) and ('action', s), applying trim markers as Go does."""
    pos = 0
    out: list[list] = []
    for m in _ACTION.finditer(src):
        text = src[pos:m.start()]
        if m.group(1):
            text = text.rstrip(" \t\r\n")
        if out and out[-1][0] == "action" and out[-1][2]:
            text = text.lstrip(" \t\r\n")
        out.append(["text", text, False])
        body = m.group(2).strip()
        out.append(["action", body, bool(m.group(3))])
        pos = m.end()
    tail = src[pos:]
    if out and out[-1][0] == "action" and out[-1][2]:
        tail = tail.lstrip(" \t\r\n")
    out.append(["text", tail, False])
    for kind, s, _ in out:
        if kind == "text" and not s:
            continue
        if kind == "action" and s.startswith("/*"):
            continue
        yield kind, s


def parse(src: str) -> list:
    root: list = []
    stack: list = [(root, None)]  # (current node list, owner)
    for kind, s in _segments(src):
        nodes, owner = stack[-1]
        if kind == "text":
            nodes.append(_Text(s))
            continue
        word = s.split(None, 1)[0] if s else ""
        rest = s[len(word):].strip()
        if word == "if":
            node = _If([(rest, [])])
            nodes.append(node)
            stack.append((node.branches[0][1], node))
        elif word == "range":
            m = re.match(r"^(\$\w*)\s*(?:,\s*(\$\w*))?\s*:=\s*(.*)$", rest, re.S)
            if m:
                a, b, expr = m.groups()
                keyvar, valvar = (a, b) if b else (None, a)
            else:
                keyvar, valvar, expr = None, None, rest
            node = _Range(keyvar, valvar, expr)
            nodes.append(node)
            stack.append((node.body, node))
        elif word == "else":
            if owner is None:
                raise GoTemplateError("{{ else }} outside if/range")
            stack.pop()
            if isinstance(owner, _If):
                cond = rest[2:].strip() if rest.startswith("if") else None
                owner.branches.append((cond, []))
                stack.append((owner.branches[-1][1], owner))
            else:
                owner.else_body = []
                stack.append((owner.else_body, owner))
        elif word == "end":
            if owner is None:
                raise GoTemplateError("unexpected {{ end }}")
            stack.pop()
        elif word in ("break", "continue"):
            if not any(isinstance(o, _Range) for _, o in stack):
                raise GoTemplateError(f"{{{{ {word} }}}} outside {{{{ range }}}}")
            nodes.append(_Loop(word))
        elif word in ("with", "define", "template", "block"):
            raise GoTemplateError(f"'{word}' is not supported by this evaluator")
        else:
            nodes.append(_Action(s))
    if len(stack) != 1:
        raise GoTemplateError("unclosed {{ if }} or {{ range }} (missing {{ end }})")
    return root


# ---------------------------------------------------------------- expressions

_TOKEN = re.compile(r'\s*(?:(\()|(\))|(\|)|("(?:[^"\\]|\\.)*")|(`[^`]*`)|(-?\d+(?:\.\d+)?)|'
                    r"(\$\w*(?:\.\w+)*)|(\.(?:\w+(?:\.\w+)*)?)|(:?=)|(\w+))", re.S)


def _tokens(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise GoTemplateError(f"cannot parse '{expr[pos:]}'")
        pos = m.end()
        kinds = ("(", ")", "|", "str", "raw", "num", "var", "field", "assign", "ident")
        for kind, val in zip(kinds, m.groups()):
            if val is not None:
                out.append((kind, val))
                break
    return out


def truthy(v) -> bool:
    if v is None or v is False:
        return False
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v != 0
    if isinstance(v, (str, list, tuple, dict)):
        return len(v) > 0
    return True


def _field(obj, names: list[str]):
    for n in names:
        if isinstance(obj, dict):
            if n not in obj:
                return None  # a missing map key is Go's zero value
            obj = obj[n]
        else:
            obj = getattr(obj, n, None)
    return obj


def _eq(a, *bs):
    return any(a == b for b in bs)


def _slice(v, *idx):
    if len(idx) == 0:
        return v
    if len(idx) == 1:
        return v[idx[0]:]
    return v[idx[0]:idx[1]]


def _print(*args):
    # Go's fmt.Sprint puts a space between operands when neither is a string
    out = ""
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out += " "
        out += _fmt(a)
    return out


def _printf(fmt: str, *args):
    """fmt.Sprintf for the verbs chat templates use: %s %v %d %q %%."""
    out, i, k = [], 0, 0
    while i < len(fmt):
        c = fmt[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        verb = fmt[i + 1] if i + 1 < len(fmt) else ""
        i += 2
        if verb == "%":
            out.append("%")
            continue
        if k >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        a = args[k]
        k += 1
        if verb in ("s", "v"):
            out.append(_fmt(a))
        elif verb == "d":
            out.append(str(int(a)))
        elif verb == "q":
            out.append(json.dumps(str(a), ensure_ascii=False))
        else:
            raise GoTemplateError(f"printf verb %{verb} is not supported by this evaluator")
    return "".join(out)


def _json(v):
    # template/template.go: json.Marshal (Go escapes <, > and & in strings)
    text = json.dumps(v, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


_FUNCS = {
    "eq": _eq, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b, "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b, "not": lambda a: not truthy(a),
    "len": len, "slice": _slice, "index": lambda v, *k: _index(v, k), "print": _print, "printf": _printf,
    "json": _json,
}


def _index(v, keys):
    for k in keys:
        v = v[k]
    return v


def _fmt(v) -> str:
    if v is None:
        return "<no value>"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


class _Scope:
    def __init__(self, root, dot):
        self.vars: list[dict] = [{"$": root}]
        self.dot = dot

    def get(self, name):
        for frame in reversed(self.vars):
            if name in frame:
                return frame[name]
        raise GoTemplateError(f"undefined variable {name}")

    def set(self, name, value):
        for frame in reversed(self.vars):
            if name in frame:
                frame[name] = value
                return
        raise GoTemplateError(f"assignment to undeclared variable {name}")


def _eval_pipeline(toks: list, scope: _Scope):
    value, first = None, True
    parts, cur, depth = [], [], 0
    for t in toks:
        if t[0] == "(":
            depth += 1
        elif t[0] == ")":
            depth -= 1
        if t[0] == "|" and depth == 0:
            parts.append(cur)
            cur = []
        else:
            cur.append(t)
    parts.append(cur)
    for cmd in parts:
        value = _eval_command(cmd, scope, None if first else [value])
        first = False
    return value


def _eval_command(toks: list, scope: _Scope, piped):
    args, i = [], 0
    while i < len(toks):
        kind, val = toks[i]
        if kind == "(":
            depth, j = 1, i + 1
            while depth:
                if j >= len(toks):
                    raise GoTemplateError("unbalanced parentheses")
                depth += {"(": 1, ")": -1}.get(toks[j][0], 0)
                j += 1
            args.append(("value", _eval_pipeline(toks[i + 1:j - 1], scope)))
            i = j
            continue
        args.append((kind, val))
        i += 1
    if not args:
        raise GoTemplateError("empty command")
    head_kind, head = args[0]
    if head_kind == "ident" and head not in ("true", "false", "nil"):
        fn = head
        rest = [_operand(a, scope) for a in args[1:]] + (piped or [])
        if fn == "and":
            v = None
            for v in rest:
                if not truthy(v):
                    return v
            return v
        if fn == "or":
            v = None
            for v in rest:
                if truthy(v):
                    return v
            return v
        if fn not in _FUNCS:
            raise GoTemplateError(f"function '{fn}' not defined")
        try:
            return _FUNCS[fn](*rest)
        except TypeError as exc:
            raise GoTemplateError(f"{fn}: {exc}") from None
    if len(args) > 1 or piped:
        raise GoTemplateError(f"cannot call a non-function ({head})")
    return _operand(args[0], scope)


def _operand(arg, scope: _Scope):
    kind, val = arg
    if kind == "value":
        return val
    if kind == "str":
        return json.loads(val)
    if kind == "raw":
        return val[1:-1]
    if kind == "num":
        return float(val) if "." in val else int(val)
    if kind == "ident":
        return {"true": True, "false": False, "nil": None}[val]
    if kind == "field":
        return scope.dot if val == "." else _field(scope.dot, val[1:].split("."))
    if kind == "var":
        name, *fields = val.split(".")
        return _field(scope.get(name), fields)
    raise GoTemplateError(f"unexpected '{val}'")


def _run(nodes: list, scope: _Scope, out: list[str]):
    for node in nodes:
        if isinstance(node, _Text):
            out.append(node.text)
        elif isinstance(node, _Action):
            toks = _tokens(node.expr)
            if len(toks) >= 2 and toks[0][0] == "var" and toks[1][0] == "assign":
                value = _eval_pipeline(toks[2:], scope)
                if toks[1][1] == ":=":
                    scope.vars[-1][toks[0][1]] = value
                else:
                    scope.set(toks[0][1], value)
            else:
                out.append(_fmt(_eval_pipeline(toks, scope)))
        elif isinstance(node, _Loop):
            raise _LoopSignal(node.word)
        elif isinstance(node, _If):
            for cond, body in node.branches:
                if cond is None or truthy(_eval_pipeline(_tokens(cond), scope)):
                    scope.vars.append({})
                    try:
                        _run(body, scope, out)
                    finally:
                        scope.vars.pop()
                    break
        elif isinstance(node, _Range):
            seq = _eval_pipeline(_tokens(node.expr), scope)
            items = list(seq.items()) if isinstance(seq, dict) else list(enumerate(seq or []))
            if not items and node.else_body is not None:
                _run(node.else_body, scope, out)
            saved = scope.dot
            for k, v in items:
                frame = {}
                if node.keyvar:
                    frame[node.keyvar] = k
                if node.valvar:
                    frame[node.valvar] = v
                scope.vars.append(frame)
                scope.dot = v
                try:
                    _run(node.body, scope, out)
                except _LoopSignal as sig:
                    if sig.word == "break":
                        break
                finally:
                    scope.vars.pop()
            scope.dot = saved


def render(src: str, data: dict) -> str:
    out: list[str] = []
    _run(parse(src), _Scope(data, data), out)
    return "".join(out)


def ollama_values(messages: list[dict[str, str]], *, think: bool | None = None) -> dict:
    """What Ollama hands a chat template that uses ``.Messages`` (template/template.go, Execute and
    collate): consecutive messages of one role merged with a blank line between (tool messages
    excepted), every system message also joined into ``.System``; ``.Think`` is the request's
    think value (false when unset) and ``.IsThinkSet`` says whether the request set it."""
    collated: list[dict] = []
    system = []
    for m in messages:
        if m["role"] == "system":
            system.append(m["content"])
        if collated and collated[-1]["Role"] == m["role"] and m["role"] != "tool":
            collated[-1]["Content"] += "\n\n" + m["content"]
        else:
            collated.append({"Role": m["role"], "Content": m["content"], "Thinking": "", "Images": None,
                             "ToolCalls": None, "ToolName": "", "ToolCallID": ""})
    return {"System": "\n\n".join(system), "Messages": collated, "Tools": None, "Response": "",
            "Think": bool(think), "ThinkLevel": "", "IsThinkSet": think is not None}
