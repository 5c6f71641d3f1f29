#!/usr/bin/python3
"""Fails when a source file includes from a layer above its own (docs/architecture.md).

Layers, lowest first; a file may include its own layer and the layers below it, never one above
or a sibling of the same rank. Run by CTest as `layers.includes`; exit 1 lists each offending
include as FILE:LINE: "included" (layer) is above layer.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
# (folder, rank): the model and the transport are pure; registry and kube are clients side by
# side on the transport; the store sits on kube; the engine and reconcilers on the store; the
# runtime and the binary on top.
LAYERS = [
    ("reconcilers/model", 0),
    ("net", 0),  # the one HTTP transport; pure of the model, as the model is of it
    ("registry", 1),
    ("kube", 1),
    ("aws", 2),  # on registry (its errors and credentials) and the model
    ("store", 2),
    ("reconcilers", 3),  # the controllers' pure parts: status, conditions, admission
    ("engine", 4),  # on the store, the clients and the reconcilers' record conditions
    ("operator/runtime", 4),
    ("operator/controllers", 5),  # the reconcilers and their Manager, on the runtime
    ("operator", 6),
]
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def layer_of(path):
    best = None
    for folder, rank in LAYERS:
        if path == folder or path.startswith(folder + "/"):
            if best is None or len(folder) > len(best[0]):
                best = (folder, rank)
    return best


def main():
    problems = []
    for f in sorted(ROOT.rglob("*")):
        if f.suffix not in (".cpp", ".hpp", ".h", ".cc") or not f.is_file():
            continue
        rel = f.relative_to(ROOT).as_posix()
        if rel.startswith(("tests/", "build", "bench/")):
            continue
        own = layer_of(rel)
        if own is None:
            continue
        for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            target = layer_of(m.group(1))
            if target is None or target[0] == own[0]:
                continue
            if target[1] >= own[1]:
                problems.append(f"{rel}:{n}: \"{m.group(1)}\" ({target[0]}) is not below {own[0]}")
    for p in problems:
        print(p)
    print(f"{len(problems)} upward or sideways includes" if problems else "layers: every include points down")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
