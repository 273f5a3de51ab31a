"""Rebuild ``kubernetes-<version>-strict.json`` from kubernetes-validate's schema folder.

kubernetes-validate (PyPI) ships, per Kubernetes version, one JSON schema per kind that refers to
a shared ``_definitions.json`` (about 1.8 MB). This script keeps only what the kinds used under
``infra/k8s/`` need: each kind's schema under ``$defs["kind.<group>.<version>.<Kind>"]``
(``kind.v1.<Kind>`` for the core group) plus every definition it reaches, with references
rewritten to ``#/$defs/...``, in one self-contained file.
The prose ``description`` of each schema node is dropped (it is most of the size and plays no
part in validation); everything else is kept as kubernetes-validate ships it.

Usage (see README.md in this folder)::

    python tests/unit/schemas/bundle_k8s_schemas.py \\
        /tmp/kv/kubernetes_validate/kubernetes-json-schema/v1.32.0-local-strict v1.32.0 \\
        tests/unit/schemas/kubernetes-v1.32.0-strict.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

#: kind key in the bundle -> file name in kubernetes-validate's folder.
KINDS = {
    "kind.batch.v1.Job": "job-batch-v1.json",
    "kind.v1.ConfigMap": "configmap-v1.json",
    "kind.v1.Secret": "secret-v1.json",
    "kind.v1.ServiceAccount": "serviceaccount-v1.json",
}
_PREFIXES = ("/api/_definitions.json#/$defs/", "_definitions.json#/$defs/", "#/$defs/")


def _rewrite(node: Any, found: set[str], property_names: bool = False) -> Any:
    """Rewrite references to local ones, collect their names, and drop prose descriptions."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "description" and isinstance(value, str) and not property_names:
                continue  # prose only; a property *named* description (property_names) is kept
            if key == "$ref" and isinstance(value, str):
                name = next((value[len(p) :] for p in _PREFIXES if value.startswith(p)), None)
                if name is None:
                    raise ValueError(f"unexpected $ref {value!r}")
                found.add(name)
                out[key] = f"#/$defs/{name}"
            else:
                out[key] = _rewrite(value, found, property_names=key in ("properties", "$defs"))
        return out
    if isinstance(node, list):
        return [_rewrite(item, found) for item in node]
    return node


def bundle(folder: Path, version: str) -> dict[str, Any]:
    """Return the self-contained schema bundle for :data:`KINDS`."""
    definitions = json.loads((folder / "_definitions.json").read_text())["$defs"]
    bundled: dict[str, Any] = {}
    pending: set[str] = set()
    for kind, file_name in KINDS.items():
        root = json.loads((folder / file_name).read_text())
        for key in ("$schema", "$id"):
            root.pop(key, None)
        bundled[kind] = _rewrite(root, pending)
    while pending:
        name = pending.pop()
        if name in bundled:
            continue
        bundled[name] = _rewrite(definitions[name], pending)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": f"Kubernetes {version} strict schemas for {', '.join(KINDS)}, bundled from "
        "kubernetes-validate's kubernetes-json-schema folder by bundle_k8s_schemas.py.",
        "$defs": dict(sorted(bundled.items())),
    }


if __name__ == "__main__":
    source, version, target = sys.argv[1:4]
    Path(target).write_text(json.dumps(bundle(Path(source), version), indent=1, sort_keys=False) + "\n")
