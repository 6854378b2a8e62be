"""scripts/offline_host.py: gather planning, packing into parts, host-side rebuild and install."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "offline_host.py"
PART_SIZE = 16384
BUNDLE_FILE = "maxwhisper-offline.tar"


def load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("offline_host", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["offline_host"] = module
    spec.loader.exec_module(module)
    return module


tool = load_tool()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_project(root: Path) -> Path:
    """A small checkout: fake wheels, a weights folder, data clips and some junk to leave out."""
    wheels = root / ".stage" / "wheels"
    wheels.mkdir(parents=True)
    (wheels / "alpha-1.0-py3-none-any.whl").write_bytes(os.urandom(9000))
    (wheels / "beta_lib-2.1-cp312-cp312-manylinux_2_34_x86_64.whl").write_bytes(os.urandom(5000))
    model = root / "weights" / "tiny.en"
    model.mkdir(parents=True)
    (model / "model.safetensors").write_bytes(os.urandom(7000))
    (model / "dims.json").write_text('{"n_mels": 80}\n')
    (root / "weights" / "base.en").mkdir()
    (root / "weights" / "base.en" / "model.safetensors").write_bytes(b"not carried")
    data = root / "data"
    data.mkdir()
    (data / "clip.wav").write_bytes(os.urandom(3000))
    (data / "manifest.csv").write_text("file,text\nclip.wav,hello\n")
    (data / "__pycache__").mkdir()
    (data / "__pycache__" / "junk.pyc").write_bytes(b"junk")
    return wheels


def pack(root: Path, *extra: str) -> tuple[Path, dict]:
    """Run `pack` on the fake project; return the parts folder and the manifest."""
    out = root / ".stage" / "bundle"
    code = tool.main([
        "pack", "--root", str(root), "--wheels", str(root / ".stage" / "wheels"),
        "--include", "weights/tiny.en", "--include", "data", "--out", str(out),
        "--part-size", str(PART_SIZE), *extra,
    ])  # fmt: skip
    assert code == 0
    return out, json.loads((out / "maxwhisper-offline.manifest.json").read_text())


@pytest.fixture
def packed(tmp_path: Path) -> tuple[Path, Path, dict]:
    root = tmp_path / "project"
    make_project(root)
    out, manifest = pack(root)
    return root, out, manifest


def run_failing(argv: list[str], capsys: pytest.CaptureFixture[str], code: int = 1) -> str:
    """Run a command that must fail with ``code``; return its error output."""
    capsys.readouterr()
    assert tool.main(argv) == code
    return capsys.readouterr().err


def tree(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


# --------------------------------------------------------------------------- defaults, options


def test_default_requirements_hold_the_max_stack_and_references() -> None:
    names = {
        tool.normalize_name(line.split("=")[0].split("[")[0]) for line in tool.DEFAULT_REQUIREMENTS
    }
    max_stack = {"max", "max-core", "max-mojo-libs", "max-shmem-libs", "mojo-compiler",
                 "mojo-compiler-mojo-libs", "msgspec", "taskgroup", "exceptiongroup"}  # fmt: skip
    assert max_stack <= names
    assert {"openai-whisper", "faster-whisper", "tiktoken", "safetensors", "jiwer"} <= names


def test_default_max_pin_matches_pyproject() -> None:
    pyproject = (SCRIPT.parent.parent / "pyproject.toml").read_text()
    project_pin = re.search(r'"(max==[^"]+)"', pyproject)
    assert project_pin is not None
    assert project_pin.group(1) in tool.DEFAULT_REQUIREMENTS


def test_default_excludes_leave_torch_stack_to_host_but_carry_max() -> None:
    requirement_class, _ = tool._packaging()
    policy = tool.ExclusionPolicy(tool.DEFAULT_EXCLUDES, {})
    for name in ("torch", "triton", "nvidia-cublas", "nvidia_cudnn_cu13", "numpy"):
        assert policy.reason(requirement_class(name)) is not None, name
    for name in ("max", "max-core", "ctranslate2", "openai-whisper"):
        assert policy.reason(requirement_class(name)) is None, name


def test_platform_tags_reach_manylinux_2_34_for_max_and_keep_legacy_aliases() -> None:
    tags = tool.platform_tags("2.35")
    assert tags[0] == "manylinux_2_35_x86_64"
    assert "manylinux_2_34_x86_64" in tags and "manylinux_2_17_x86_64" in tags
    assert {"manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"} <= set(tags)
    assert "manylinux_2_36_x86_64" not in tags
    assert tool.platform_tags("2.28", "aarch64")[0] == "manylinux_2_28_aarch64"
    with pytest.raises(tool.BundleError):
        tool.platform_tags("235")


def test_target_options_name_python_version_and_every_platform() -> None:
    options = tool.pip_target_options("3.12", ["manylinux_2_34_x86_64", "manylinux1_x86_64"])
    assert options[:5] == [
        "--only-binary=:all:",
        "--python-version",
        "3.12",
        "--implementation",
        "cp",
    ]
    assert options.count("--platform") == 2


@pytest.mark.parametrize(
    ("text", "size"),
    [("55MiB", 55 << 20), ("64KiB", 64 << 10), ("1000", 1000), ("2M", 2 << 20), ("1.5k", 1536)],
)
def test_parse_size(text: str, size: int) -> None:
    assert tool.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MiB", "-5", "0", "12 parsecs"])
def test_parse_size_rejects_nonsense(text: str) -> None:
    with pytest.raises(Exception, match="size"):
        tool.parse_size(text)


def test_host_package_list_reads_pip_freeze() -> None:
    lines = ["# comment", "Torch==2.11.0", "numpy==2.5.2", "bare_name", "pkg @ file:///x.whl", ""]
    assert tool.read_host_packages(lines) == {
        "torch": "2.11.0", "numpy": "2.5.2", "bare-name": None, "pkg": None,
    }  # fmt: skip


# --------------------------------------------------------------------------- dependency walk


def report_item(name: str, version: str, requires: list[str], sha: str | None = None) -> dict:
    archive_info = {"hashes": {"sha256": sha}} if sha else {}
    return {
        "metadata": {"name": name, "version": version, "requires_dist": requires},
        "download_info": {"url": f"https://files.example/{name}-{version}.whl",
                          "archive_info": archive_info},
    }  # fmt: skip


SYNTHETIC_REPORT = {
    "install": [
        report_item("app", "1.0", ["torch>=2", "Lib_Core>=2", "plugin[fancy]"], "a" * 64),
        report_item("torch", "2.9", ["nvidia-cublas", "sympy"], "b" * 64),
        report_item("nvidia-cublas", "13", [], "c" * 64),
        report_item("sympy", "1.14", ["mpmath"], "d" * 64),
        report_item("mpmath", "1.3", [], "e" * 64),
        report_item(
            "lib-core", "2.5",
            ['backport; python_version < "3.12"', 'newdep; python_version >= "3.12"',
             'testonly; extra == "test"'],
            "f" * 64,
        ),
        report_item("backport", "1.0", [], "1" * 64),
        report_item("plugin", "0.3", ['fancydep; extra == "fancy"'], "2" * 64),
        report_item("fancydep", "0.1", [], "3" * 64),
        report_item("testonly", "9", [], "4" * 64),
    ]
}  # fmt: skip


def select(python_version: str, host: dict[str, str | None] | None = None):
    environment = tool.target_environment(python_version, ["manylinux_2_34_x86_64"])
    policy = tool.ExclusionPolicy(tool.DEFAULT_EXCLUDES, host or {})
    return tool.select_packages(SYNTHETIC_REPORT, ["app"], policy, environment)


def test_walk_drops_excluded_packages_and_what_only_they_need() -> None:
    selection = select("3.12")
    assert set(selection.carried) == {"app", "lib-core", "plugin", "fancydep"}
    assert set(selection.excluded) == {"torch"}
    assert selection.excluded["torch"]["required_by"] == ["app 1.0"]


def test_walk_uses_the_target_python_for_markers() -> None:
    on_312 = select("3.12")
    assert "backport" not in on_312.carried
    assert on_312.missing == {"newdep": "newdep"}  # pip resolved for 3.11: must be added
    on_311 = select("3.11")
    assert "backport" in on_311.carried and not on_311.missing


def test_walk_carries_a_host_package_when_the_host_version_is_too_old() -> None:
    selection = select("3.12", host={"lib-core": "1.0", "plugin": None})
    assert "lib-core" in selection.carried
    assert any("lib-core: host has 1.0" in note for note in selection.host_too_old)
    assert set(selection.excluded) == {"plugin", "torch"}
    assert "fancydep" not in selection.carried  # only the host's plugin needed it


def test_hashed_requirements_pin_each_file_or_none() -> None:
    lines = tool.hashed_requirements(select("3.11"))
    assert "app==1.0 --hash=sha256:" + "a" * 64 in lines
    assert len(lines) == 5
    selection = select("3.11")
    selection.carried["app"]["item"] = report_item("app", "1.0", [])  # no hash for one file
    assert all("--hash" not in line for line in tool.hashed_requirements(selection))


def test_gather_downloads_only_selected_wheels_and_prunes_stale_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "wheels"
    dest.mkdir()
    (dest / "app-0.9-py3-none-any.whl").write_bytes(b"old version")
    (dest / "leftover-1.0-py3-none-any.whl").write_bytes(b"stale")
    with_newdep = {"install": [*SYNTHETIC_REPORT["install"], report_item("newdep", "4.0", [])]}
    resolutions: list[list[str]] = []

    def fake_resolve(requirements, target_options, built_dir, work_dir):
        """pip here runs 3.11, so it resolves newdep (3.12 only) once it is asked for by name."""
        resolutions.append(list(requirements))
        assert "--python-version" in target_options
        return (with_newdep if "newdep" in requirements else SYNTHETIC_REPORT), ""

    def fake_run_tool(command, what):
        assert "download" in command and "--no-deps" in command
        pinned = Path(command[command.index("-r") + 1]).read_text().split()
        for line in pinned:
            if "==" in line:
                name, version = line.split("==")
                (dest / f"{name.replace('-', '_')}-{version}-py3-none-any.whl").write_bytes(b"w")

    monkeypatch.setattr(tool, "resolve", fake_resolve)
    monkeypatch.setattr(tool, "run_tool", fake_run_tool)
    code = tool.main(["gather", "--no-default-requirements", "--no-default-builds", "--no-project",
                      "--dest", str(dest), "app"])  # fmt: skip
    assert code == 0
    assert resolutions == [["app"], ["app", "newdep"]]  # second round adds the 3.12-only need
    names = sorted(path.name for path in dest.glob("*.whl"))
    assert names == ["app-1.0-py3-none-any.whl", "fancydep-0.1-py3-none-any.whl",
                     "lib_core-2.5-py3-none-any.whl", "newdep-4.0-py3-none-any.whl",
                     "plugin-0.3-py3-none-any.whl"]  # fmt: skip
    summary = json.loads((dest / "gather.json").read_text())
    assert summary["python_version"] == "3.12" and summary["total_size"] == 5
    assert "torch" in summary["left_to_host"]
    output = capsys.readouterr().out
    assert "removed stale wheel: app-0.9-py3-none-any.whl" in output
    assert "left to host: torch" in output


def test_wheel_set_helpers_find_duplicates_and_prune(tmp_path: Path) -> None:
    for name in ("a-1.0-py3-none-any.whl", "A-2.0-py3-none-any.whl", "b_c-1-py3-none-any.whl"):
        (tmp_path / name).write_bytes(b"x")
    assert tool.duplicate_wheels(sorted(tmp_path.glob("*.whl"))) == {
        "a": ["A-2.0-py3-none-any.whl", "a-1.0-py3-none-any.whl"]
    }
    removed = tool.prune_wheels(tmp_path, {"a": "1", "b-c": None})
    assert removed == ["A-2.0-py3-none-any.whl"]  # 1.0 == 1, and any version of b-c stays
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a-1.0-py3-none-any.whl",
        "b_c-1-py3-none-any.whl",
    ]
    assert tool.prune_wheels(tmp_path, {}) == ["a-1.0-py3-none-any.whl", "b_c-1-py3-none-any.whl"]


# --------------------------------------------------------------------------- pack


def test_pack_cuts_parts_and_writes_a_complete_manifest(packed: tuple[Path, Path, dict]) -> None:
    _, out, manifest = packed
    parts = manifest["parts"]
    assert len(parts) >= 5
    assert [p["name"] for p in parts] == [
        f"{BUNDLE_FILE}.part{i:03d}" for i in range(1, len(parts) + 1)
    ]
    assert [p["index"] for p in parts] == list(range(1, len(parts) + 1))
    assert all(p["size"] == PART_SIZE for p in parts[:-1]) and 0 < parts[-1]["size"] <= PART_SIZE
    whole = b""
    for part in parts:
        data = (out / part["name"]).read_bytes()
        assert len(data) == part["size"] and sha256(data) == part["sha256"]
        whole += data
    assert manifest["size"] == len(whole) and manifest["sha256"] == sha256(whole)
    assert manifest["format"] == tool.MANIFEST_FORMAT and manifest["bundle_file"] == BUNDLE_FILE
    assert (
        "install" in manifest["install_command"] and "--no-index" in manifest["pip_install_command"]
    )
    assert [w["file"] for w in manifest["wheels"]] == [
        "alpha-1.0-py3-none-any.whl", "beta_lib-2.1-cp312-cp312-manylinux_2_34_x86_64.whl"
    ]  # fmt: skip
    assert manifest["paths"] == ["data", "offline_host.py", "weights"]
    sums = (out / "maxwhisper-offline.SHA256SUMS").read_text().splitlines()
    assert sums[0] == f"{parts[0]['sha256']}  {parts[0]['name']}" and len(sums) == len(parts)


def test_pack_is_deterministic_and_removes_stale_parts(packed: tuple[Path, Path, dict]) -> None:
    root, out, first = packed
    (out / f"{BUNDLE_FILE}.part999").write_bytes(b"from an older, larger pack")
    _, second = pack(root)
    assert [p["sha256"] for p in second["parts"]] == [p["sha256"] for p in first["parts"]]
    assert not (out / f"{BUNDLE_FILE}.part999").exists()


def test_pack_refuses_two_versions_of_a_package(tmp_path: Path, capsys) -> None:
    wheels = make_project(tmp_path)
    (wheels / "alpha-1.1-py3-none-any.whl").write_bytes(b"second alpha")
    error = run_failing(["pack", "--root", str(tmp_path), "--wheels", str(wheels),
                         "--out", str(tmp_path / "out")], capsys)  # fmt: skip
    assert "more than one version" in error and "alpha" in error


def test_pack_reports_a_missing_include(tmp_path: Path, capsys) -> None:
    make_project(tmp_path)
    wheels = str(tmp_path / ".stage" / "wheels")
    argv = ["pack", "--root", str(tmp_path), "--wheels", wheels, "--include", "weights/large-v3"]
    error = run_failing([*argv, "--out", str(tmp_path / "out")], capsys, code=2)
    assert "weights/large-v3" in error


def test_gzip_bundle_round_trips(tmp_path: Path) -> None:
    root = tmp_path / "project"
    make_project(root)
    out, manifest = pack(root, "--compress", "gz")
    assert manifest["bundle_file"] == "maxwhisper-offline.tar.gz"
    assert tool.main(["join", str(out)]) == 0
    assert (
        tool.main(["unpack", str(out / manifest["bundle_file"]), "--into", str(tmp_path / "u")])
        == 0
    )
    assert (tmp_path / "u" / "weights" / "tiny.en" / "dims.json").read_text() == '{"n_mels": 80}\n'


# --------------------------------------------------------------------------- host: join, unpack


def test_join_and_unpack_rebuild_the_packed_trees(packed, tmp_path: Path) -> None:
    root, out, manifest = packed
    assert tool.main(["verify", str(out)]) == 0
    assert tool.main(["join", str(out)]) == 0
    joined = out / BUNDLE_FILE
    assert sha256(joined.read_bytes()) == manifest["sha256"]
    assert tool.main(["verify", str(joined)]) == 0
    dest = tmp_path / "host" / "bundle"
    assert tool.main(["unpack", str(joined), "--into", str(dest)]) == 0
    assert tree(dest / "weights" / "tiny.en") == tree(root / "weights" / "tiny.en")
    assert not (dest / "weights" / "base.en").exists()
    expected_data = {k: v for k, v in tree(root / "data").items() if "__pycache__" not in k}
    assert tree(dest / "data") == expected_data
    assert tree(dest / "wheels") == tree(root / ".stage" / "wheels")
    assert (dest / "offline_host.py").read_bytes() == SCRIPT.read_bytes()


def test_join_names_a_missing_part(packed, capsys) -> None:
    _, out, manifest = packed
    (out / manifest["parts"][1]["name"]).unlink()
    error = run_failing(["join", str(out)], capsys)
    assert f"missing part 2: {BUNDLE_FILE}.part002 not found" in error
    assert not (out / BUNDLE_FILE).exists()


def test_join_names_a_corrupted_part(packed, capsys) -> None:
    _, out, manifest = packed
    third = out / manifest["parts"][2]["name"]
    data = bytearray(third.read_bytes())
    data[100] ^= 0xFF
    third.write_bytes(bytes(data))
    error = run_failing(["join", str(out)], capsys)
    assert f"part {BUNDLE_FILE}.part003: sha256 mismatch" in error
    assert "part001" not in error and "part002" not in error


def test_join_names_a_truncated_part(packed, capsys) -> None:
    _, out, manifest = packed
    first = out / manifest["parts"][0]["name"]
    first.write_bytes(first.read_bytes()[:1000])
    error = run_failing(["verify", str(out)], capsys)
    assert f"part {BUNDLE_FILE}.part001: 1000 bytes, the manifest says {PART_SIZE}" in error


def test_join_detects_parts_in_the_wrong_order(packed, capsys) -> None:
    _, out, manifest = packed
    first, second = (out / manifest["parts"][i]["name"] for i in (0, 1))
    swap = first.read_bytes()
    first.write_bytes(second.read_bytes())
    second.write_bytes(swap)
    error = run_failing(["join", str(out)], capsys)
    assert f"part {BUNDLE_FILE}.part001: sha256 mismatch" in error


def test_join_without_manifest_uses_part_numbers(packed, tmp_path: Path, capsys) -> None:
    _, out, manifest = packed
    (out / "maxwhisper-offline.manifest.json").unlink()
    output = tmp_path / "joined.tar"
    assert tool.main(["join", str(out), "--no-manifest", "--output", str(output)]) == 0
    assert sha256(output.read_bytes()) == manifest["sha256"]
    (out / manifest["parts"][3]["name"]).unlink()
    error = run_failing(["join", str(out), "--no-manifest"], capsys)
    assert f"missing part 4: {BUNDLE_FILE}.part004" in error


def test_verify_names_the_bad_or_missing_parts_of_a_joined_file(packed, capsys) -> None:
    _, out, manifest = packed
    assert tool.main(["join", str(out)]) == 0
    joined = out / BUNDLE_FILE
    data = bytearray(joined.read_bytes())
    data[PART_SIZE + 7] ^= 0x01  # inside part 2
    joined.write_bytes(bytes(data))
    error = run_failing(["verify", str(joined)], capsys)
    assert f"part {BUNDLE_FILE}.part002: sha256 mismatch" in error and "part001" not in error
    joined.write_bytes(bytes(data[: 3 * PART_SIZE]))
    error = run_failing(["verify", str(joined)], capsys)
    last = manifest["parts"][-1]["name"]
    assert f"incomplete: the file ends after {3 * PART_SIZE} of {manifest['size']} bytes" in error
    assert f"missing {BUNDLE_FILE}.part004 .. {last}" in error


def test_unpack_refuses_a_bundle_that_does_not_match(packed, tmp_path: Path, capsys) -> None:
    _, out, _ = packed
    assert tool.main(["join", str(out)]) == 0
    joined = out / BUNDLE_FILE
    joined.write_bytes(joined.read_bytes()[:-10])
    error = run_failing(["unpack", str(joined), "--into", str(tmp_path / "dest")], capsys)
    assert "does not match the manifest" in error and "cut short" in error
    assert not (tmp_path / "dest").exists()


def test_unpack_refuses_paths_outside_the_destination(tmp_path: Path, capsys) -> None:
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as archive:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        archive.addfile(info, io.BytesIO(b"bad"))
    error = run_failing(
        ["unpack", str(evil), "--into", str(tmp_path / "dest"), "--no-verify"], capsys
    )
    assert "unsafe path in archive: ../escaped.txt" in error
    assert not (tmp_path / "escaped.txt").exists()


# --------------------------------------------------------------------------- host: append


def carry_parts(out: Path, manifest: dict, transfers: Path) -> list[Path]:
    """Each part in its own folder with the manifest, as one small transfer would bring it."""
    assert tool.main(["carry", "all", "--parts", str(out), "--into", str(transfers)]) == 0
    carried = []
    for part in manifest["parts"]:
        folder = transfers / f"part{part['index']:03d}"
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            [part["name"], "maxwhisper-offline.manifest.json"]
        )
        carried.append(folder / part["name"])
    return carried


def test_append_one_part_per_transfer_rebuilds_the_bundle(packed, tmp_path: Path, capsys) -> None:
    _, out, manifest = packed
    carried = carry_parts(out, manifest, tmp_path / "transfers")
    growing = tmp_path / "root" / BUNDLE_FILE
    for number, part in enumerate(carried, 1):
        assert tool.main(["append", str(part), "--into", str(growing)]) == 0
        assert growing.stat().st_size == sum(p["size"] for p in manifest["parts"][:number])
        if number == 2:
            assert "appended" in capsys.readouterr().out
            assert tool.main(["append", str(part), "--into", str(growing)]) == 0  # re-sent: no-op
            assert "already appended" in capsys.readouterr().out
            assert growing.stat().st_size == 2 * PART_SIZE
    assert "complete" in capsys.readouterr().out
    assert sha256(growing.read_bytes()) == manifest["sha256"]
    manifest_path = str(out / "maxwhisper-offline.manifest.json")
    unpacked = tmp_path / "b"
    assert (
        tool.main(["unpack", str(growing), "--into", str(unpacked), "--manifest", manifest_path])
        == 0
    )
    assert (unpacked / "data" / "manifest.csv").is_file()


def test_append_refuses_the_wrong_order(packed, tmp_path: Path, capsys) -> None:
    _, out, manifest = packed
    growing = tmp_path / BUNDLE_FILE
    error = run_failing(["append", str(out / manifest["parts"][1]["name"]), "--into", str(growing)],
                        capsys)  # fmt: skip
    assert f"wrong order: {BUNDLE_FILE} holds 0 part(s); expected {BUNDLE_FILE}.part001" in error
    assert f"got {BUNDLE_FILE}.part002" in error
    assert not growing.exists()


def test_append_refuses_a_corrupted_part_before_writing(packed, tmp_path: Path, capsys) -> None:
    _, out, manifest = packed
    carried = carry_parts(out, manifest, tmp_path / "transfers")
    growing = tmp_path / BUNDLE_FILE
    assert tool.main(["append", str(carried[0]), "--into", str(growing)]) == 0
    data = bytearray(carried[1].read_bytes())
    data[-1] ^= 0xFF
    carried[1].write_bytes(bytes(data))
    error = run_failing(["append", str(carried[1]), "--into", str(growing)], capsys)
    assert f"part {BUNDLE_FILE}.part002: sha256 mismatch" in error
    assert growing.stat().st_size == PART_SIZE


def test_append_without_manifest_still_checks_order_and_repeats(
    packed, tmp_path: Path, capsys
) -> None:
    _, out, manifest = packed
    (out / "maxwhisper-offline.manifest.json").unlink()
    growing = tmp_path / BUNDLE_FILE
    first, second, third = (out / manifest["parts"][i]["name"] for i in range(3))
    assert tool.main(["append", str(first), "--into", str(growing)]) == 0
    error = run_failing(["append", str(third), "--into", str(growing)], capsys)
    assert f"expected {BUNDLE_FILE}.part002, got {BUNDLE_FILE}.part003" in error
    second_copy = tmp_path / "elsewhere" / second.name
    second_copy.parent.mkdir()
    second_copy.write_bytes(b"x" * PART_SIZE)
    assert tool.main(["append", str(second), "--into", str(growing)]) == 0
    error = run_failing(["append", str(second_copy), "--into", str(growing)], capsys)
    assert "differs from the part 2 already appended" in error


def test_append_discards_the_tail_of_an_interrupted_append(packed, tmp_path: Path, capsys) -> None:
    _, out, manifest = packed
    growing = tmp_path / BUNDLE_FILE
    first, second = (out / manifest["parts"][i]["name"] for i in range(2))
    assert tool.main(["append", str(first), "--into", str(growing)]) == 0
    with open(growing, "ab") as handle:
        handle.write(second.read_bytes()[:1234])  # a copy that died half-way
    capsys.readouterr()
    assert tool.main(["append", str(second), "--into", str(growing)]) == 0
    assert "discarding 1234 bytes" in capsys.readouterr().out
    assert growing.read_bytes() == first.read_bytes() + second.read_bytes()


def test_append_refuses_a_file_it_did_not_start(packed, tmp_path: Path, capsys) -> None:
    _, out, manifest = packed
    growing = tmp_path / BUNDLE_FILE
    growing.write_bytes(b"something else")
    error = run_failing(["append", str(out / manifest["parts"][0]["name"]), "--into", str(growing)],
                        capsys)  # fmt: skip
    assert "was not built by append" in error


def test_carry_stages_one_part_and_rejects_unknown_or_bad_ones(packed, tmp_path, capsys) -> None:
    _, out, manifest = packed
    staged = tmp_path / "carry"
    assert tool.main(["carry", "2", "--parts", str(out), "--into", str(staged)]) == 0
    assert [p.name for p in staged.iterdir()] == ["part002"]
    assert (staged / "part002" / f"{BUNDLE_FILE}.part002").read_bytes() == (
        out / f"{BUNDLE_FILE}.part002"
    ).read_bytes()
    for which in ("99", "0", "two"):
        error = run_failing(["carry", which, "--parts", str(out), "--into", str(staged)], capsys, 2)
        assert f"no part {which}: the bundle has parts 1..{len(manifest['parts'])}" in error
    (out / f"{BUNDLE_FILE}.part003").write_bytes(b"damaged before it left")
    error = run_failing(["carry", "all", "--parts", str(out), "--into", str(staged)], capsys)
    assert f"part {BUNDLE_FILE}.part003: 22 bytes, the manifest says {PART_SIZE}" in error


# --------------------------------------------------------------------------- host: install, check


def make_wheel(folder: Path, name: str, version: str) -> Path:
    """A real, installable pure-Python wheel holding module ``name``."""
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f'__version__ = "{version}"\n',
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = "".join(f"{path},,\n" for path in files) + f"{dist_info}/RECORD,,\n"
    files[f"{dist_info}/RECORD"] = record
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def test_install_puts_wheels_in_a_site_folder_and_check_imports_them(
    tmp_path: Path, capsys
) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "wheels").mkdir(parents=True)
    make_wheel(bundle / "wheels", "offline_demo_pkg", "1.2.3")
    assert tool.main(["install", "--bundle", str(bundle)]) == 0
    site = bundle / "site"
    assert (site / "offline_demo_pkg" / "__init__.py").is_file()
    env_line = f"export PYTHONPATH={site}${{PYTHONPATH:+:$PYTHONPATH}}"
    assert env_line in (bundle / "env.sh").read_text()
    assert env_line in capsys.readouterr().out

    environment = {**os.environ, "PYTHONPATH": str(site)}
    good = subprocess.run([sys.executable, str(SCRIPT), "check", "--module", "offline_demo_pkg"],
                          capture_output=True, text=True, env=environment, check=False)  # fmt: skip
    assert good.returncode == 0, good.stdout + good.stderr
    assert "ok   offline_demo_pkg 1.2.3" in good.stdout
    bad = subprocess.run([sys.executable, str(SCRIPT), "check", "--module", "offline_demo_pkg",
                          "--module", "no_such_module_xyz"],
                         capture_output=True, text=True, env=environment, check=False)  # fmt: skip
    assert bad.returncode == tool.EXIT_CHECK
    assert "FAIL no_such_module_xyz: ModuleNotFoundError" in bad.stdout


def test_install_refuses_two_versions_of_a_package(tmp_path: Path, capsys) -> None:
    (tmp_path / "wheels").mkdir()
    make_wheel(tmp_path / "wheels", "dup", "1.0")
    make_wheel(tmp_path / "wheels", "dup", "2.0")
    error = run_failing(["install", "--bundle", str(tmp_path)], capsys)
    assert "more than one version" in error and "dup-1.0" in error and "dup-2.0" in error


def test_a_failing_pip_install_exits_with_the_tool_code(tmp_path: Path, capsys) -> None:
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "broken-1.0-py3-none-any.whl").write_bytes(b"not a zip file")
    error = run_failing(["install", "--bundle", str(tmp_path)], capsys, code=tool.EXIT_TOOL)
    assert "pip install failed" in error


# --------------------------------------------------------------------------- host constraints


def test_host_side_needs_only_the_standard_library_and_python_3_8() -> None:
    source = SCRIPT.read_text()
    module = ast.parse(source, feature_version=(3, 8))  # syntax newer than 3.8 fails here
    top_level_imports = set()
    for node in module.body:
        if isinstance(node, ast.Import):
            top_level_imports |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            top_level_imports.add(node.module.split(".")[0])
    assert top_level_imports - {"__future__"} <= sys.stdlib_module_names
    for name in ("removeprefix", "removesuffix", "is_relative_to", "file_digest", "strict="):
        assert name not in source, f"{name} is newer than Python 3.8"


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as raised:
        tool.main([])
    assert raised.value.code == tool.EXIT_USAGE
    with pytest.raises(SystemExit) as raised:
        tool.main(["pack", "--part-size", "lots"])
    assert raised.value.code == tool.EXIT_USAGE
