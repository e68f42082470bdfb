#!/usr/bin/env python3
"""Draws the dependency graph between the files of one Rust crate and reports cycles.

    .ci/import-graph.py [--edges] [SRC_DIR ...]      (default: chatmail-imap/src)

A file depends on another when it
  * names it in a path: `use crate::a::b`, `use super::x`, `crate::a::f()` in code,
    `pub use a::B` / `mod a;` in a parent (a module declaration counts: the parent
    owns and exposes the child); not in a visibility (`pub(in crate::a)` says who
    may call, it uses nothing);
  * calls a method that an `impl Session { .. }` block of the other file defines
    (`self.handle_list(..)`): handlers as `impl` blocks add no `use` line, so the
    imports alone would hide the calls that make a circle. Every type whose name ends
    in `Session` counts (IMAP's `Session`, SMTP's `ServerSession` and `ClientSession`).

Test code is a leaf: it may use anything, and nothing but other tests uses it. So a
`#[cfg(test)] mod tests;` declaration adds no edge from its parent (the test file's own
uses still count, so a test file is a node that depends on what it tests), and what an
inline `#[cfg(test)] mod tests { .. }` uses is not counted as its file's.

Method calls are matched by name against the inherent methods the `impl` blocks of
such a type define in other files: `self.name(` against the methods of the type whose
`impl` (inherent or trait) encloses the call, `Type::name(` against that type's, and
`s.name(` or `session.name(` (receivers that are not typed) against every such type's,
so this can only add edges, never hide one. Prints the cycles (strongly connected
components of more than one file) and exits 1 if there are any; otherwise prints the
files in layers, each depending only on lower layers it, and exits 0.
"""

import os
import re
import sys
from collections import defaultdict

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
# The types whose `impl` blocks hold the command handlers: any name ending in Session.
SESSION = r"[A-Za-z0-9_]*Session"


def strip_comments_and_strings(text):
    """Source with comments, string and char literals blanked (line breaks kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 40]) and not re.match(r"\w", text[i - 1:i] or " "):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + len(hashes) + 2)
            end = n if end < 0 else end + 1 + len(hashes)
            out.append('""' + "\n" * text.count("\n", i, end))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x..'", text[i:i + 12]):
            m = re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x..'", text[i:i + 12])
            out.append("' '")
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def modules(src):
    """{module path tuple: file} for every .rs file under `src` (lib.rs is the root)."""
    mods = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(root, f)
            rel = os.path.relpath(path, src)[:-3].split(os.sep)
            if rel in (["lib"], ["main"]):
                mods[()] = path
            elif rel[-1] == "mod":
                mods[tuple(rel[:-1])] = path
            else:
                mods[tuple(rel)] = path
    return mods


def use_paths(code):
    """Every path a `use` item names, with its groups expanded, and where it stands."""
    paths = []
    for m in re.finditer(r"\buse\s+([^;]+);", code):
        found = []
        expand("", m.group(1).replace("\n", " "), found)
        paths += [(p, m.start()) for p in found]
    return paths


def inline_modules(code):
    """(start, end, name) of every inline `mod name { .. }` (a test module, say)."""
    spans = []
    for m in re.finditer(r"\bmod\s+(" + IDENT + r")\s*\{", code):
        depth, i = 1, m.end()
        while i < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[i], 0)
            i += 1
        spans.append((m.start(), i, m.group(1)))
    return spans


def module_at(here, spans, pos):
    """The module a position of the file is in: the file's, or an inline one inside it."""
    inner = [s for s in spans if s[0] < pos < s[1]]
    return here + tuple(name for _, _, name in sorted(inner))


def expand(prefix, tree, out):
    """Expands `a::{b, c::{d}}` into ['a::b', 'a::c::d']."""
    tree = tree.strip()
    brace = tree.find("{")
    if brace < 0:
        out.append(prefix + re.sub(r"\s+as\s+\w+$", "", tree).strip())
        return
    head = prefix + tree[:brace].strip()
    body = tree[brace + 1:tree.rfind("}")]
    depth, start = 0, 0
    for i, c in enumerate(body + ","):
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == "," and depth == 0:
            part = body[start:i].strip()
            if part:
                expand(head, part, out)
            start = i + 1


def resolve(path, here, mods):
    """The module (tuple) a path inside module `here` lands in, or None if external."""
    parts = [p for p in path.split("::") if p]
    if not parts:
        return None
    if parts[0] == "crate":
        base, parts = (), parts[1:]
    elif parts[0] in ("super", "self"):
        base = here
        while parts and parts[0] in ("super", "self"):
            if parts[0] == "super":
                base = base[:-1]
            parts = parts[1:]
    elif tuple(here + (parts[0],)) in mods:
        base = here  # a child module named directly (`pub use session::Session`)
    else:
        return None
    target = base
    for p in parts:
        if tuple(target + (p,)) in mods:
            target = target + (p,)
        else:
            break
    return target


def impl_methods(code, ty):
    """{(type, method name)} of every inherent `impl <ty> {` block (not trait impls)."""
    names = set()
    for m in re.finditer(r"\bimpl\s+(" + ty + r")\s*\{", code):
        depth, i = 1, m.end()
        while i < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[i], 0)
            i += 1
        block = code[m.end():i]
        # Only the block's own items (depth 0 inside it), not fns nested in bodies.
        level = 0
        for line in block.split("\n"):
            if level == 0:
                f = re.match(r"\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?fn\s+(" + IDENT + ")", line)
                if f:
                    names.add((m.group(1), f.group(1)))
            level += line.count("{") - line.count("}")
    return names


def impl_spans(code):
    """(start, end, self type) of every `impl` block, inherent or of a trait."""
    spans = []
    # At the start of a line: an item, not `impl Trait` in an argument's type.
    for m in re.finditer(r"(?m)^[ \t]*(?:unsafe\s+)?impl\b([^{;]*)\{", code):
        header = m.group(1)
        while re.search(r"<[^<>]*>", header):
            header = re.sub(r"<[^<>]*>", "", header)
        target = re.split(r"\bwhere\b", re.split(r"\bfor\b", header)[-1])[0]
        name = re.findall(IDENT, target)
        depth, i = 1, m.end()
        while i < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[i], 0)
            i += 1
        spans.append((m.start(), i, name[-1] if name else ""))
    return spans


def self_type(spans, pos):
    """The type `self` is at a position: that of the innermost `impl` around it."""
    inner = [s for s in spans if s[0] < pos < s[1]]
    return max(inner)[2] if inner else None


def test_modules(code):
    """(start, end) of every `#[cfg(test)]` module: a declaration `mod x;` (its own
    span) or an inline `mod x { .. }` (up to its closing brace)."""
    spans = []
    pattern = (r"#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*"
               r"(?:pub(?:\([^)]*\))?\s+)?mod\s+" + IDENT + r"\s*([;{])")
    for m in re.finditer(pattern, code):
        if m.group(1) == ";":
            spans.append((m.start(), m.end()))
            continue
        depth, i = 1, m.end()
        while i < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[i], 0)
            i += 1
        spans.append((m.start(), i))
    return spans


def in_tests(spans, pos):
    """Whether a position lies in test code (see `test_modules`)."""
    return any(start <= pos < end for start, end in spans)


def graph(src):
    mods = modules(src)
    files = {f: mod for mod, f in mods.items()}
    codes = {f: strip_comments_and_strings(open(f, encoding="utf-8").read()) for f in files}
    # `pub(in crate::server)` names an ancestor to say who may call, not what is used.
    codes = {f: re.sub(r"\bpub\s*\(\s*in\s+[^)]*\)", "pub", code) for f, code in codes.items()}
    edges = defaultdict(set)
    for f, code in codes.items():
        spans = inline_modules(code)
        refs = use_paths(code)
        refs += [(m.group(1), m.start()) for m in re.finditer(r"\b((?:crate|super|self)(?:::" + IDENT + ")+)", code)]
        for m in re.finditer(r"\b(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;", code):
            refs.append(("self::" + m.group(1), m.start()))
        # A module brought in by `use` (`use crate::command;`) and named in paths later
        # (`command::idle::done(..)`): those paths count as well.
        for r, pos in list(refs):
            here = module_at(files[f], spans, pos)
            target = resolve(r, here, mods)
            last = r.split("::")[-1]
            if target is not None and target and target[-1] == last and last not in ("self", "super"):
                for m in re.finditer(r"(?<![:\w])" + last + r"((?:::" + IDENT + ")+)", code):
                    refs.append(("::".join(("crate",) + target) + m.group(1), m.start()))
        tests = test_modules(code)
        for r, pos in refs:
            if in_tests(tests, pos):
                continue
            target = resolve(r, module_at(files[f], spans, pos), mods)
            if target is not None and mods[target] != f:
                edges[f].add(mods[target])
    # The sessions' methods by type and name, wherever their `impl` blocks are.
    owners = defaultdict(set)
    for f, code in codes.items():
        for key in impl_methods(code, SESSION):
            owners[key].add(f)
    types = {ty for ty, _ in owners}
    call = r"(?:\b(self|s|session)\.|\b(" + SESSION + r")::)(" + IDENT + r")\s*(?:::<[^>]*>)?\("
    for f, code in codes.items():
        spans = impl_spans(code)
        tests = test_modules(code)
        for m in re.finditer(call, code):
            if in_tests(tests, m.start()):
                continue
            value, ty, name = m.groups()
            receiver = value or ty
            if receiver == "self":
                callee = {self_type(spans, m.start())} & types
            elif receiver in ("s", "session"):
                callee = types
            else:
                callee = {receiver}
            for ty in callee:
                for owner in owners.get((ty, name), ()):
                    if owner != f:
                        edges[f].add(owner)
    return sorted(files), edges


def sccs(nodes, edges):
    """Tarjan's strongly connected components."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in nodes:
        if v not in index:
            visit(v)
    return out


def layers(nodes, edges):
    """Files grouped by depth: layer 0 depends on nothing, layer k on layers < k."""
    depth = {}

    def d(v):
        if v not in depth:
            depth[v] = 1 + max((d(w) for w in edges[v]), default=-1)
        return depth[v]

    for v in nodes:
        d(v)
    by = defaultdict(list)
    for v, k in depth.items():
        by[k].append(v)
    return [sorted(by[k]) for k in sorted(by)]


def main(argv):
    show_edges = "--edges" in argv
    dirs = [a for a in argv if not a.startswith("--")] or ["chatmail-imap/src"]
    status = 0
    for src in dirs:
        nodes, edges = graph(src)
        rel = lambda f: os.path.relpath(f, src)
        print(f"{src}: {len(nodes)} files, {sum(len(e) for e in edges.values())} edges")
        if show_edges:
            for f in nodes:
                print(f"  {rel(f)} -> {', '.join(sorted(rel(t) for t in edges[f])) or '-'}")
        cycles = [c for c in sccs(nodes, edges) if len(c) > 1]
        if cycles:
            status = 1
            for c in cycles:
                print(f"  CIRCLE of {len(c)} files: {' '.join(rel(f) for f in c)}")
        else:
            print("  no circle; layers (a file depends only on files of lower layers):")
            for k, layer in enumerate(layers(nodes, edges)):
                print(f"  {k}: {' '.join(rel(f) for f in layer)}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
