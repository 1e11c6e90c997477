#!/usr/bin/env python3
"""The declared MSRV (`rust-version` in Cargo.toml) is no lower than what
any dependency of the engine declares, and no higher than the toolchain
that builds it. This machine has one toolchain, so a build with the MSRV
itself is not possible here; this catches the common break: a dependency
bump that raises the floor without anyone noticing."""
import json
import subprocess
import sys


def version(s):
    return tuple(int(x) for x in s.split(".")[:3]) + (0,) * (3 - len(s.split(".")))


meta = json.loads(
    subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-default-features", "--locked"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
)
ours = next(p for p in meta["packages"] if p["name"] == "ocidb")
declared = ours.get("rust_version")
if not declared:
    sys.exit("Cargo.toml declares no rust-version")
nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
packages = {p["id"]: p for p in meta["packages"]}
# The engine's normal dependencies, transitively.
seen, stack = set(), [ours["id"]]
while stack:
    pid = stack.pop()
    if pid in seen:
        continue
    seen.add(pid)
    for dep in nodes[pid]["deps"]:
        if any(k["kind"] is None for k in dep["dep_kinds"]):
            stack.append(dep["pkg"])
worst = max(
    ((packages[p].get("rust_version") or "0", packages[p]["name"]) for p in seen if p != ours["id"]),
    key=lambda t: version(t[0]),
)
rustc = subprocess.run(["rustc", "--version"], check=True, capture_output=True, text=True).stdout.split()[1]
print(f"declared MSRV {declared}; highest dependency floor {worst[0]} ({worst[1]}); toolchain {rustc}")
if version(worst[0]) > version(declared):
    sys.exit(f"{worst[1]} needs Rust {worst[0]}, above the declared rust-version {declared}")
if version(declared) > version(rustc):
    sys.exit(f"the declared rust-version {declared} is above the toolchain {rustc}")
