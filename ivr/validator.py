"""Whole-flow checks that a schema cannot express: the graph (dangling edges, unreachable nodes, loops that
never wait for the caller, ``back`` with nowhere to go), prompt files on disk and ambiguous grammars.

Problems read ``FILE:LINE: node <id>: message`` so an editor can jump to them. Rules worth knowing:

* keywords are compared after normalisation (lower-case, punctuation removed, spaces collapsed);
* a global keyword may repeat a gather branch keyword only when both lead to the same node (a harmless
  redundancy, e.g. "agent" globally and in the main menu); any other overlap is ambiguous and an error;
* a loop is an error only when no ``gather`` or ``record`` is on it: those wait for the caller, everything
  else (say, set, goto, branch, http, play) would spin without end;
* ``back`` with no gather before it on any path from ``start`` is a warning (it would just hang up).
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections import deque
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from .flow import BackNode, Flow, FlowError, GatherNode, Loc, PlayNode, RecordNode, format_loc, load_flow

Kind = Literal["syntax", "unknown_type", "unknown_field", "duplicate_key", "invalid", "missing_start",
               "dangling_edge", "unreachable", "silent_cycle", "missing_prompt", "duplicate_keyword",
               "duplicate_digits", "empty_grammar", "back_without_gather"]
_WAITS_FOR_CALLER = (GatherNode, RecordNode)


class Problem(BaseModel):
    """One finding; ``format()`` is the line printed by ``softswitch ivr validate``."""

    model_config = ConfigDict(frozen=True)
    path: str
    line: int | None
    node_id: str | None
    kind: Kind
    message: str
    severity: Literal["error", "warning"] = "error"

    def format(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        node = f" node {self.node_id}:" if self.node_id is not None else ""
        level = " warning:" if self.severity == "warning" else ""
        return f"{where}:{node}{level} {self.message}"


def normalize_keyword(phrase: str) -> str:
    """Lower-case, drop punctuation, collapse spaces: "Customer-Service!" and "customer service" clash."""
    text = unicodedata.normalize("NFKC", phrase).lower()  # full-width "ＡＧＥＮＴ" is "agent" to a recogniser
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text)
    return re.sub(r"\s+", " ", text).strip()


def validate(flow: Flow, source_path: str | Path | None = None,
             prompts_dirs: tuple[str | Path, ...] = ()) -> list[Problem]:
    """All graph, grammar and prompt-file problems of a loaded flow, in file order."""
    return _Checker(flow, source_path, prompts_dirs).run()


def validate_file(path: str | Path, prompts_dirs: tuple[str | Path, ...] = ()) -> list[Problem]:
    """Load then validate; load errors (syntax, unknown type/field...) come back as problems too."""
    try:
        flow = load_flow(path)
    except FlowError as e:
        out = []
        for item in e.items:
            node_id = str(item.loc[1]) if len(item.loc) >= 2 and item.loc[0] == "nodes" else None
            sub = item.loc[2:] if node_id is not None else item.loc
            message = f"{format_loc(sub)}: {item.message}" if sub else item.message
            out.append(Problem(path=str(path), line=item.line, node_id=node_id, kind=item.kind, message=message))
        return out
    return validate(flow, path, prompts_dirs)


def main_validate(path: str | Path, prompts_dirs: tuple[str | Path, ...] = ()) -> int:
    """CLI entry (``softswitch ivr validate FILE``): print problems, 1 if any is an error, else 0."""
    problems = validate_file(path, prompts_dirs)
    for p in problems:
        print(p.format())
    errors = sum(p.severity == "error" for p in problems)
    if not problems:
        print(f"{path}: ok")
    return 1 if errors else 0


class _Checker:
    def __init__(self, flow: Flow, source_path: str | Path | None, prompts_dirs: tuple[str | Path, ...]) -> None:
        self.flow = flow
        src = source_path if source_path is not None else flow.source_path
        self.path = str(src) if src is not None else "<flow>"
        self.base = Path(src).parent if src is not None else Path.cwd()
        self.prompts_dirs = [Path(d) for d in prompts_dirs]
        self.problems: list[Problem] = []

    def add(self, loc: Loc, kind: Kind, message: str, severity: Literal["error", "warning"] = "error") -> None:
        node_id = str(loc[1]) if len(loc) >= 2 and loc[0] == "nodes" else None
        self.problems.append(Problem(path=self.path, line=self.flow.line_of(loc), node_id=node_id, kind=kind,
                                     message=message, severity=severity))

    def run(self) -> list[Problem]:
        self.check_start()
        self.check_edges()
        self.check_reachable()
        self.check_cycles()
        self.check_prompts()
        self.check_grammars()
        self.check_back()
        order = {nid: i for i, nid in enumerate(self.flow.nodes)}
        self.problems.sort(key=lambda p: (p.line or 1 << 30, order.get(p.node_id or "", -1)))
        return self.problems

    # -- graph ---------------------------------------------------------------------------------------

    def _hint(self, target: str) -> str:
        close = difflib.get_close_matches(target, list(self.flow.nodes), n=1)
        return f" (did you mean {close[0]!r}?)" if close else ""

    def check_start(self) -> None:
        if self.flow.start not in self.flow.nodes:
            self.add(("start",), "missing_start",
                     f"start: node {self.flow.start!r} does not exist{self._hint(self.flow.start)}")

    def check_edges(self) -> None:
        for _, loc, target in self.flow.edges():
            if target not in self.flow.nodes:
                self.add(loc, "dangling_edge",
                         f"{format_loc(loc[2:])}: goes to unknown node {target!r}{self._hint(target)}")
        for i, kw in enumerate(self.flow.keywords):
            if kw.goto not in self.flow.nodes:
                self.add(("keywords", i, "goto"), "dangling_edge",
                         f"keywords[{i}].goto: goes to unknown node {kw.goto!r}{self._hint(kw.goto)}")

    def successors(self, nid: str, with_globals: bool = True) -> list[str]:
        node = self.flow.nodes[nid]
        out = [t for _, t in node.edges() if t in self.flow.nodes]
        if with_globals and isinstance(node, GatherNode):
            out += [kw.goto for kw in self.flow.keywords if kw.goto in self.flow.nodes]
        return out

    def reach(self, roots: list[str]) -> set[str]:
        seen, todo = set(roots), deque(roots)
        while todo:
            for nxt in self.successors(todo.popleft()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    def check_reachable(self) -> None:
        if self.flow.start not in self.flow.nodes:
            return
        seen = self.reach([self.flow.start])
        for nid in self.flow.nodes:
            if nid not in seen:
                self.add(("nodes", nid), "unreachable", f"unreachable from start node {self.flow.start!r}")

    def check_cycles(self) -> None:
        """Loops among nodes that never wait for the caller (Tarjan SCCs of the non-waiting subgraph)."""
        nodes = self.flow.nodes
        silent = [nid for nid, n in nodes.items() if not isinstance(n, _WAITS_FOR_CALLER)]
        silent_set = set(silent)
        graph = {nid: [t for t in self.successors(nid, with_globals=False) if t in silent_set] for nid in silent}
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on_stack: set[str] = set()
        sccs: list[list[str]] = []

        for root in silent:  # iterative Tarjan: flows can be long chains
            if root in index:
                continue
            work = [(root, 0)]
            while work:
                v, i = work.pop()
                if i == 0:
                    index[v] = low[v] = len(index)
                    stack.append(v)
                    on_stack.add(v)
                if i < len(graph[v]):
                    work.append((v, i + 1))
                    w = graph[v][i]
                    if w not in index:
                        work.append((w, 0))
                    elif w in on_stack:
                        low[v] = min(low[v], index[w])
                    continue
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    sccs.append(comp)
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[v])

        order = {nid: i for i, nid in enumerate(nodes)}
        for comp in sccs:
            if len(comp) == 1 and comp[0] not in graph[comp[0]]:
                continue
            first = min(comp, key=order.__getitem__)
            cycle = self._cycle_path(first, set(comp), graph)
            self.add(("nodes", first), "silent_cycle",
                     f"loops without waiting for the caller: {' -> '.join(cycle)} "
                     "(no gather or record on the loop)")

    @staticmethod
    def _cycle_path(start: str, comp: set[str], graph: dict[str, list[str]]) -> list[str]:
        prev: dict[str, str] = {}
        todo = deque([start])
        while todo:
            v = todo.popleft()
            for w in graph[v]:
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return path[::-1] + [start]
                if w in comp and w not in prev:
                    prev[w] = v
                    todo.append(w)
        return [start, start]

    def check_back(self) -> None:
        if self.flow.start not in self.flow.nodes:
            return
        reachable = self.reach([self.flow.start])
        gathers = [nid for nid in reachable if isinstance(self.flow.nodes[nid], GatherNode)]
        after_gather = self.reach([t for g in gathers for t in self.successors(g)])
        for nid, node in self.flow.nodes.items():
            if isinstance(node, BackNode) and nid in reachable and nid not in after_gather:
                self.add(("nodes", nid), "back_without_gather",
                         "back has no gather before it on any path from start (the call would end here)",
                         severity="warning")

    # -- prompt files --------------------------------------------------------------------------------

    def _exists(self, file: str) -> bool:
        p = Path(file)
        if p.is_absolute():
            return p.is_file()
        return any((d / p).is_file() for d in [self.base, *self.prompts_dirs])

    def check_prompts(self) -> None:
        for nid, node in self.flow.nodes.items():
            files: list[tuple[Loc, str]] = []
            if isinstance(node, PlayNode):
                files.append((("file",), node.file))
            elif isinstance(node, GatherNode):
                for field, part in (("prompt", node.prompt), ("no_input", node.no_input), ("no_match", node.no_match)):
                    if part is not None and part.play is not None:
                        files.append(((field, "play"), part.play))
            for loc, file in files:
                if not self._exists(file):
                    dirs = ", ".join(str(d) for d in [self.base, *self.prompts_dirs])
                    self.add(("nodes", nid) + loc, "missing_prompt",
                             f"{format_loc(loc)}: prompt file {file!r} not found (looked in {dirs})")

    # -- grammars ------------------------------------------------------------------------------------

    def check_grammars(self) -> None:
        global_owner: dict[str, tuple[int, str]] = {}
        for i, kw in enumerate(self.flow.keywords):
            for j, phrase in enumerate(kw.phrases):
                norm = normalize_keyword(phrase)
                if norm in global_owner:
                    self.add(("keywords", i, "phrases", j), "duplicate_keyword",
                             f"keywords[{i}]: global keyword {phrase!r} is already keywords[{global_owner[norm][0]}]")
                else:
                    global_owner[norm] = (i, kw.goto)
        for nid, node in self.flow.nodes.items():
            if isinstance(node, GatherNode):
                self._check_gather(nid, node, global_owner)

    def _check_gather(self, nid: str, node: GatherNode, global_owner: dict[str, tuple[int, str]]) -> None:
        speech, dtmf = "speech" in node.input, "dtmf" in node.input
        if not node.branches:
            self.add(("nodes", nid, "branches"), "empty_grammar", "gather has no branches: nothing can match")
            return
        words: dict[str, int] = {}
        digits: dict[str, int] = {}
        for i, br in enumerate(node.branches):
            loc = ("nodes", nid, "branches", i)
            usable_words = speech and bool(br.keywords)
            usable_digits = dtmf and br.digits is not None
            if not usable_words and not usable_digits:
                accepts = " and ".join(node.input)
                self.add(loc, "empty_grammar",
                         f"branches[{i}]: nothing to match: the gather accepts {accepts} "
                         f"but the branch has no {' or '.join(_needs(speech, dtmf))}")
            for j, phrase in enumerate(br.keywords):
                norm = normalize_keyword(phrase)
                if not norm:
                    self.add(loc + ("keywords", j), "empty_grammar",
                             f"branches[{i}].keywords[{j}]: {phrase!r} is empty after normalisation")
                elif norm in words and words[norm] != i:
                    self.add(loc + ("keywords", j), "duplicate_keyword",
                             f"branches[{i}]: keyword {phrase!r} is also on branches[{words[norm]}]")
                elif norm in global_owner and global_owner[norm][1] != br.goto:
                    k, target = global_owner[norm]
                    self.add(loc + ("keywords", j), "duplicate_keyword",
                             f"branches[{i}]: keyword {phrase!r} clashes with global keywords[{k}] "
                             f"(goes to {target!r}, this branch to {br.goto!r})")
                words.setdefault(norm, i)
            if br.digits is not None:
                if br.digits in digits:
                    self.add(loc + ("digits",), "duplicate_digits",
                             f"branches[{i}]: digits {br.digits!r} are also on branches[{digits[br.digits]}]")
                else:
                    digits[br.digits] = i


def _needs(speech: bool, dtmf: bool) -> list[str]:
    return (["keywords"] if speech else []) + (["digits"] if dtmf else [])
