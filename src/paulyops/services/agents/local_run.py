"""Run a package file locally, in the same sandbox as the server (``paulyops package run``).

For agent authors: the package is validated (unsigned allowed, as in developer mode),
unpacked into a temporary folder, and run once with the given inputs, settings and
grants. Nothing touches an instance's database. The person at the terminal chose to run
this file, so the run counts as trusted (the fallback sandbox, without bubblewrap, runs
only trusted agents); every other layer is the server's.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paulyops.core.errors import FieldError
from paulyops.services.agents.runtime import MAX_BATCH, RunItem, RunOutcome, RunRequest
from paulyops.services.agents.sandbox import SandboxConfig, run_batch
from paulyops.services.agents.unpack import remove_tree, unpack
from paulyops.services.marketplace.errors import PackageError
from paulyops.services.marketplace.validate import Report, validate_package


@dataclass(frozen=True, slots=True)
class LocalRun:
    """The validation report and the outcome of the run."""

    report: Report
    outcome: RunOutcome


def parse_setting(text: str) -> tuple[str, Any]:
    """Parse ``key=value``; the value is JSON when it parses as JSON, else a string.

    Raises:
        PackageError: no ``=``.
    """
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise PackageError(
            f"--setting: expected key=value, got {text!r}",
            [FieldError("setting", "expected key=value")],
        )
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def _with_defaults(schema: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    out = {
        name: prop["default"]
        for name, prop in schema.get("properties", {}).items()
        if isinstance(prop, dict) and "default" in prop
    }
    out.update(settings)
    return out


def _check_settings(schema: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(dict(schema))
    errors = sorted(validator.iter_errors(dict(settings)), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        where = ".".join(str(p) for p in first.path) or "settings"
        raise PackageError(
            f"--setting {where}: {first.message}",
            [FieldError(f"settings.{where}", error.message) for error in errors],
        )


def run_package(
    package: Path,
    inputs: Sequence[Path],
    *,
    settings: Mapping[str, Any],
    grants: Sequence[str],
    config: SandboxConfig,
) -> LocalRun:
    """Validate, unpack and run ``package`` on ``inputs`` (one batch).

    Raises:
        PackageError: the package fails validation, a grant is not requested by its
            manifest, a setting breaks the settings schema, or there are no or too many
            inputs.
    """
    if not inputs or len(inputs) > MAX_BATCH:
        raise PackageError(
            f"--input: give 1 to {MAX_BATCH} files, got {len(inputs)}",
            [FieldError("input", f"1 to {MAX_BATCH} files")],
        )
    for path in inputs:
        if not path.is_file():
            raise PackageError(
                f"--input {path}: no such file", [FieldError("input", "no such file")]
            )
    report = validate_package(package, allow_unsigned=True)
    manifest = report.manifest
    if not report.is_ok or manifest is None:
        failure = report.failures()[0]
        raise PackageError(
            f"{package}: rejected: {failure.message}", [FieldError(failure.name, failure.message)]
        )
    unknown = sorted(set(grants) - set(manifest.capabilities))
    if unknown:
        raise PackageError(
            f"--grant {unknown[0]}: the manifest does not request it (requests: "
            f"{', '.join(manifest.capabilities) or 'nothing'})",
            [FieldError("grant", "not requested by the manifest")],
        )
    effective = _with_defaults(manifest.settings, settings)
    _check_settings(manifest.settings, effective)
    data = package.read_bytes()
    root = Path(tempfile.mkdtemp(prefix="paulyops-package-run-"))
    try:
        folder = unpack(data, hashlib.sha256(data).hexdigest(), root)
        items = [
            RunItem(
                job_id=f"local-{index}-{uuid.uuid4().hex[:8]}",
                attempt=1,
                source=path,
                name=path.name,
                media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream",
                size=path.stat().st_size,
            )
            for index, path in enumerate(inputs)
        ]
        request = RunRequest(
            organization_id="local",
            installation_id="local",
            agent_id=manifest.id,
            version=manifest.version,
            package_dir=folder,
            entrypoint=manifest.entrypoint,
            items=items,
            capabilities=frozenset(grants),
            settings=effective,
            resources=manifest.resources.model_dump(by_alias=True, exclude_none=True),
            trusted=True,
        )
        outcome = run_batch(request, config=config)
    finally:
        remove_tree(root)
    return LocalRun(report=report, outcome=outcome)


def outcome_dict(outcome: RunOutcome) -> dict[str, Any]:
    """Return the JSON form of an outcome (``package run --json``); file bytes as sizes."""
    return {
        "mode": outcome.mode,
        "error": outcome.error,
        "exitCode": outcome.exit_code,
        "durationMs": round(outcome.duration_ms, 1),
        "items": [
            {
                "jobId": item.job_id,
                "ok": item.ok,
                "error": item.error,
                "durationMs": item.duration_ms,
                "result": item.result,
                "files": {name: len(data) for name, data in item.files.items()},
            }
            for item in outcome.items
        ],
    }


__all__ = ["LocalRun", "outcome_dict", "parse_setting", "run_package"]
