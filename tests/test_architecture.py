"""The house rules of DESIGN.md, checked on the source: imports run one way, no cycles, no
private names borrowed across modules."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "unetkit"
# what each part may import (besides itself and the shared base modules); DESIGN.md's picture
BASE = {"errors", "io_utils", "progress", "device", "config", "plotting", "scoring"}
ALLOWED = {
    "errors": set(), "io_utils": {"errors", "progress"}, "progress": set(),
    "device": {"errors", "config"},
    "config": {"errors", "io_utils"}, "plotting": {"io_utils"}, "scoring": {"errors"},
    "calibration": {"errors"},
    "data": BASE,
    "models": BASE,
    "train": BASE | {"data", "models", "calibration"},
    "infer": BASE | {"data", "models", "calibration"},
    "report": BASE | {"data", "models", "infer"},
    "plan": BASE | {"data", "models", "train"},
    "share": BASE | {"data", "models", "infer", "report"},
    "pipeline": BASE | {"data", "models", "train", "infer", "report", "plan"},
    "serve": BASE | {"data", "models", "train", "infer", "report", "plan", "pipeline"},
    "bench": BASE | {"data", "models", "train", "infer", "report", "plan", "pipeline",
                     "serve", "fit_flags", "cli_support"},
    "demo": BASE | {"data", "models", "train", "infer", "report", "pipeline"},
    "fit_flags": BASE | {"train"},
    "cli_support": BASE,
    "cli": BASE | {"data", "models", "train", "infer", "report", "plan", "pipeline", "share",
                   "serve", "bench", "demo", "fit_flags", "cli_support", "cli_label"},
    "__main__": {"cli"},
    "__init__": BASE | {"data", "models", "train", "infer", "pipeline"},
}
ALLOWED["cli_label"] = ALLOWED["cli"] - {"cli_label"}  # commands moved out of the full cli.py


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for every import, lazy ones included."""
    tree = ast.parse(path.read_text(), str(path))
    package = _module_name(path) if path.name == "__init__.py" else \
        _module_name(path).rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            found.append((base, [a.name for a in node.names], node.lineno))
    return [f for f in found if f[0] == "unetkit" or f[0].startswith("unetkit.")]


def _files() -> dict[str, Path]:
    return {_module_name(p): p for p in SRC.rglob("*.py")}


def _resolve(target: str, names: list[str], modules: dict[str, Path]) -> list[str]:
    """The modules an import statement depends on (a name may itself be a submodule)."""
    out = []
    for n in names:
        if f"{target}.{n}" in modules:
            out.append(f"{target}.{n}")
    if len(out) < len(names) or not names:
        out.append(target)
    return out


def _part(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _graph() -> dict[str, set[str]]:
    modules = _files()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for m, path in modules.items():
        for target, names, _ in _imports(path):
            for dep in _resolve(target, names, modules):
                if dep in modules and dep != m:
                    graph[m].add(dep)
    return graph


def test_imports_follow_the_flow() -> None:
    bad = []
    for m, path in _files().items():
        here = _part(m)
        for target, _, line in _imports(path):
            there = _part(target)
            if there != here and there not in ALLOWED[here]:
                bad.append(f"{path.relative_to(SRC)}:{line} ({here}) imports {target}")
    assert not bad, "imports against DESIGN.md's flow:\n" + "\n".join(bad)


def test_no_import_cycles_between_files_or_packages() -> None:
    graph = _graph()
    # package-level graph: a cycle between two packages counts even through different files
    packages: dict[str, set[str]] = {}
    for m, deps in graph.items():
        packages.setdefault(_part(m), set()).update(_part(d) for d in deps if _part(d) != _part(m))
    for g, what in ((graph, "files"), (packages, "packages")):
        cycle = _find_cycle(g)
        assert cycle is None, f"import cycle between {what}: " + " -> ".join(cycle)


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (c := visit(d)):
                return c
        state[n] = 2
        stack.pop()
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_no_private_names_taken_from_other_modules() -> None:
    bad = []
    for m, path in _files().items():
        for target, names, line in _imports(path):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and target != m:
                bad.append(f"{path.relative_to(SRC)}:{line} takes {', '.join(private)} from "
                           f"{target}")
    assert not bad, "private names used across modules:\n" + "\n".join(bad)


def test_the_checker_sees_a_cycle_and_a_wrong_way_import() -> None:
    """The rules above can fail: a two-file cycle is found, and train -> infer is refused."""
    assert _find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None
    assert "infer" not in ALLOWED["train"] and "train" not in ALLOWED["infer"]
