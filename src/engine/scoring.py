"""Label scoring (log-probability mode): every label scored from one evaluation, nothing sampled.

What a label's probability is. The labels' token sequences (the prompt, the task's answer prefix,
the label's text, tokenized as one text) form a tree below the prompt: they share the prompt and
part where their tokens first differ. By default (``end_of_turn=False``) a label's probability is
the chance that generation held to the labels (the label grammar) answers it, sampling from the
model's own distribution: at every point where labels part, the model's probabilities of the
tokens that continue some label, renormalized over those tokens; where a label's next token is
forced (no other label goes on from there), nothing is counted. Where one label ends and another
goes on ("for", "forward"), ending counts as the end-of-generation tokens' probability, as the
grammar allows it there. Greedy generation held to the labels takes the most probable branch at
each parting, so on labels that part at their first token (the usual case) the most probable
label is the one it writes, up to how its numbers were computed (other batches, another cache)
and up to a spelling of the label in other tokens, which only generation can take.

``end_of_turn=True`` scores instead the unconstrained probability that the whole reply is the
label: every token of it, then an end-of-generation token (what earlier versions did for bare
labels). A label the model would continue after ("ham SUBSCRIBE...") then loses by the end term,
which on the embedded model decides the answer more than the label does (on the spam example:
"ham" for all 50 messages of one prompt variant; benchmarks/logprob_vs_generate.py compares the two).

How it is computed. The prompt is evaluated once (``_evaluate_exactly``: the same logits whatever
the cache held before, so the same item always gets the same probabilities). When the
labels part at their first token, those logits are all it takes: a single evaluation and no
decode of any label. Otherwise the tree's tokens up to its last parting are decoded in one batch,
one llama.cpp sequence per branch (the prompt's cache shared by all), and read where labels part.
Log-softmax is computed only at partings, and only over what a figure needs: the renormalized
probabilities take the few continuing tokens' logits; the model's log-probabilities
(``LabelScores.logprobs``) take one log-sum-exp of each such row.

``LabelScoring`` is one part of ``engine.llamacpp.LlamaCppBackend``, over its session part."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from engine.types import LabelScores, Reply

END = -1  # the tree's mark for "the reply ends here" (any end-of-generation token)


@dataclass(eq=False)
class _Node:
    depth: int  # tokens after the prompt's common part
    token: int | None = None  # the token that leads here (None at the root, END at an end mark)
    children: dict[int, "_Node"] = field(default_factory=dict)
    labels: list[int] = field(default_factory=list)  # indexes of the labels whose path goes through here
    batch: int | None = None  # this node's place in the continuation batch (its logits, when read)


def _tree(tails: list[list[int]], end_of_turn: bool) -> _Node:
    """The labels' continuations as a tree; an end mark below each label that must say it ends (all
    with ``end_of_turn``, else those another label goes on from)."""
    root = _Node(0)
    leaves = []
    for j, tail in enumerate(tails):
        node = root
        node.labels.append(j)
        for t in tail:
            node = node.children.setdefault(t, _Node(node.depth + 1, t))
            node.labels.append(j)
        leaves.append(node)
    for j, node in enumerate(leaves):
        if end_of_turn or node.children:
            end = node.children.setdefault(END, _Node(node.depth + 1, END))
            end.labels.append(j)
    return root


def _read(logits, node: _Node, eog) -> dict[int, float]:
    """The log-probabilities the tree needs at ``node``, from its logits row: each child's (an end
    mark: the end-of-generation tokens' together), over the whole vocabulary (one log-sum-exp of the
    row, the single pass over the vocabulary a parting costs)."""
    import numpy as np

    m = float(logits.max())
    lse = m + math.log(float(np.exp(logits - m).sum(dtype=np.float64)))
    out = {}
    for t in node.children:
        if t != END:
            out[t] = float(logits[t]) - lse
        elif len(eog):
            out[t] = m + math.log(float(np.exp(logits[eog].astype(np.float64) - m).sum())) - lse
        else:  # a vocabulary without end-of-generation tokens: a reply cannot end there
            out[t] = -math.inf
    return out


class LabelScoring:
    def score_choices(self, messages: list[dict[str, str]], choices, *, end_of_turn: bool = False) -> LabelScores:
        """Every label's probability after the prompt and ``choices.prefix`` (see the module's text for
        what it is): from the prompt's evaluation alone when the labels part at their first token,
        else with one batched decode of their continuations. Nothing is sampled; the same messages
        give the same probabilities. ``end_of_turn``: the unconstrained probability of the whole
        reply being the label, end of turn included, instead."""
        if self.ctx is None:
            raise RuntimeError("load() the backend before score_choices()")
        self._device_detach()  # whole logits: no device sampler
        t_start = time.perf_counter()
        labels = list(choices.continuations)
        text = self.render(messages) + choices.prefix
        seqs = []
        for label in labels:
            toks = self.tokenize(text + choices.continuations[label])
            if self.add_bos and self.bos >= 0 and (not toks or toks[0] != self.bos):
                toks.insert(0, self.bos)
            seqs.append(toks)
        # the prompt: what every label's tokens share (at least one token before the shortest ends)
        shared = min(len(t) for t in seqs) - 1
        first = seqs[0]
        for toks in seqs[1:]:
            shared = next((i for i, (a, b) in enumerate(zip(first[:shared], toks)) if a != b), shared)
        prompt = first[:shared]
        root = _tree([t[shared:] for t in seqs], end_of_turn)
        self._check_fits(max(seqs, key=len))

        # the continuation batch: every node on the way to a node whose logits are read
        read = self._nodes_to_read(root, end_of_turn)
        batch_nodes = self._batch_nodes(root, read)
        leaves = [n for n in batch_nodes if not any(c.batch is not None for c in n.children.values())]
        if len(leaves) > 1:
            self._ensure_sequences(len(leaves))

        t0 = time.perf_counter()
        cached = self._evaluate_exactly(prompt, self.head_length(messages, prompt))
        values = {id(root): _read(self._logits(), root, self._eog)} if id(root) in read else {}
        prompt_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        if batch_nodes:
            self._decode_tree(prompt, batch_nodes, leaves, read)
            try:
                for node in batch_nodes:
                    if id(node) in read:
                        values[id(node)] = _read(self._logits_at(node.batch), node, self._eog)
            finally:
                self._drop_tree(len(prompt), len(leaves))
        logprobs, probs = self._label_scores(root, values, len(labels), end_of_turn)
        gen_s = time.perf_counter() - t1
        best = max(range(len(labels)), key=lambda j: (probs[j], -j))
        reply = Reply(text=choices.prefix + choices.continuations[labels[best]], finish_reason="stop",
                      prompt_tokens=len(prompt), cached_tokens=cached, completion_tokens=len(batch_nodes),
                      prompt_seconds=prompt_s, gen_seconds=gen_s, wall_seconds=time.perf_counter() - t_start)
        return LabelScores(logprobs=dict(zip(labels, logprobs)), probs=dict(zip(labels, probs)), reply=reply,
                           end_of_turn=end_of_turn, decoded_tokens=len(batch_nodes))

    # ------------------------------------------------------------------ the prompt, evaluated exactly
    _SENTINEL = "\ue000\ue001\ue000"  # a last message no template changes (private-use characters)

    def head_length(self, messages: list[dict[str, str]], tokens: list[int]) -> int:
        """How many of the prompt ``tokens`` come before the last message's text: the conversation's head
        (system prompt, few-shot turns), the same for every item of a task. Found by rendering the
        conversation with a sentinel as the last message's text; 0 when the template hides it."""
        key = (tuple((m["role"], m["content"]) for m in messages[:-1]), messages[-1]["role"])
        head = self._heads.get(key)
        if head is None:
            text = self.render(messages[:-1] + [{"role": messages[-1]["role"], "content": self._SENTINEL}])
            at = text.find(self._SENTINEL)
            head = self.tokenize(text[:at]) if at > 0 else []
            if head and self.add_bos and self.bos >= 0 and head[0] != self.bos:
                head.insert(0, self.bos)
            if len(self._heads) > 64:
                self._heads.clear()
            self._heads[key] = head
        n = 0
        for a, b in zip(head, tokens):
            if a != b:
                break
            n += 1
        return min(n, len(tokens) - 1)

    def _evaluate_exactly(self, tokens: list[int], head: int) -> int:
        """Evaluate the prompt ``tokens`` so that their last position's logits are the same whatever the
        cache held before: the head (``tokens[:head]``) in n_batch chunks from position 0, the rest in
        n_batch chunks from ``head``. llama.cpp's results depend on how a prompt is cut into batches
        (other kernels for other batch sizes), so reusing whatever prefix the cache shares, as ``chat``
        does, makes an item's logits depend on the item before it. The cache is reused only where it
        holds this head evaluated this way. Returns the tokens served from the cache."""
        if self._exact == head and self._kv[:head] == tokens[:head]:
            cached = head
            if len(self._kv) > head:
                if not self.L.llama_memory_seq_rm(self.mem, 0, head, -1):
                    raise RuntimeError("llama.cpp could not trim its cache")
                del self._kv[head:]
        else:
            self.clear_cache()
            cached = 0
            self._decode(tokens[:head])
            self._exact = head
        self._decode(tokens[head:])
        return cached

    # ------------------------------------------------------------------ the tree
    @staticmethod
    def _nodes_to_read(root: _Node, end_of_turn: bool) -> set[int]:
        """The nodes (ids) whose logits a score needs: where labels part (with ``end_of_turn``, every
        node on a label's way, its end included)."""
        out, stack = set(), [root]
        while stack:
            node = stack.pop()
            if node.children and (end_of_turn or len(node.children) > 1):
                out.add(id(node))
            stack.extend(c for c in node.children.values() if c.token != END)
        return out

    @staticmethod
    def _batch_nodes(root: _Node, read: set[int]) -> list[_Node]:
        """The nodes below the root on the way to every node read, in tree order (parents first)."""
        wanted: set[int] = set()

        def mark(node: _Node) -> bool:
            below = [mark(c) for c in node.children.values() if c.token != END]
            keep = any(below) or id(node) in read
            if keep and node is not root:
                wanted.add(id(node))
            return keep

        mark(root)
        out, stack = [], [root]
        while stack:
            node = stack.pop()
            if id(node) in wanted:
                node.batch = len(out)
                out.append(node)
            stack.extend(reversed([c for c in node.children.values() if c.token != END]))
        return out

    def _decode_tree(self, prompt: list[int], nodes: list[_Node], leaves: list[_Node], read: set[int]) -> None:
        """Decode the tree's ``nodes`` in one batch after the prompt: one sequence per branch (the
        branch of ``leaves[i]`` is sequence i; sequence 0 holds the prompt, the others share it), each
        node in the sequences of the leaves below it; logits kept where a parting is read."""
        L, n0 = self.L, len(prompt)
        seq_of: dict[int, list[int]] = {}
        for i, leaf in enumerate(leaves):
            seq_of[id(leaf)] = [i]
        for node in reversed(nodes):  # children come after their parents: gather upward
            if id(node) not in seq_of:
                seq_of[id(node)] = sorted({s for c in node.children.values() if c.batch is not None
                                           for s in seq_of[id(c)]})
        for i in range(1, len(leaves)):
            L.llama_memory_seq_cp(self.mem, 0, i, -1, -1)
        batch = L.llama_batch_init(len(nodes), 0, max(1, len(leaves)))
        try:
            batch.n_tokens = len(nodes)
            for i, node in enumerate(nodes):
                batch.token[i] = node.token
                batch.pos[i] = n0 + node.depth - 1
                seqs = seq_of[id(node)]
                batch.n_seq_id[i] = len(seqs)
                for k, s in enumerate(seqs):
                    batch.seq_id[i][k] = s
                batch.logits[i] = 1 if id(node) in read else 0
            self._grouped = None
            rc = L.llama_decode(self.ctx, batch)
            if rc != 0:
                self._drop_tree(n0, len(leaves))
                raise RuntimeError(f"llama_decode failed with code {rc}")
        finally:
            L.llama_batch_free(batch)

    def _drop_tree(self, n0: int, n_seqs: int) -> None:
        """Back to the prompt alone in the cache (sequence 0), for the next call's reuse."""
        L = self.L
        L.llama_memory_seq_rm(self.mem, 0, n0, -1)
        for i in range(1, n_seqs):
            L.llama_memory_seq_rm(self.mem, i, -1, -1)

    def _logits_at(self, i: int):
        """The logits of the batch's i-th token (a view, valid until the next decode)."""
        import ctypes

        addr = self._get_logits(self.ctx, i)
        if not addr:
            raise RuntimeError("llama.cpp returned no logits")
        return self._np.frombuffer((ctypes.c_float * self.n_vocab).from_address(addr), dtype=self._np.float32)

    @staticmethod
    def _label_scores(root: _Node, values: dict[int, dict[int, float]], n: int,
                      end_of_turn: bool) -> tuple[list[float], list[float]]:
        """(the model's log-probability of each label's counted tokens, each label's probability)."""
        logp = [0.0] * n
        logq = [0.0] * n  # renormalized over the continuing tokens at each parting
        stack = [root]
        while stack:
            node = stack.pop()
            got = values.get(id(node))
            if got is not None:
                top = max(got.values())
                lse = top + math.log(sum(math.exp(v - top) for v in got.values()))
                for t, child in node.children.items():
                    for j in child.labels:
                        logp[j] += got[t]
                        logq[j] += got[t] - lse
            stack.extend(c for c in node.children.values() if c.token != END)
        if end_of_turn:  # the whole reply's probability, normalized over the labels
            top = max(logp)
            w = [math.exp(v - top) for v in logp]
            probs = [x / sum(w) for x in w]
        else:
            probs = [math.exp(v) for v in logq]
            total = sum(probs)
            probs = [p / total for p in probs]  # 1 up to rounding; exactly 1 for the store
        return logp, probs
