"""Bundle safety and validation: every hostile archive fails cleanly, every skill.yaml problem
is named with its file and field."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest
from puras_common.archive import ArchiveError, Limits, extract
from puras_deployments.bundle import read_bundle


def make_zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, data in entries:
            archive.writestr(info, data)
    return buffer.getvalue()


def symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        ([("/etc/passwd", b"x")], "absolute path"),
        ([("skills/../../escape", b"x")], "'..' in path"),
        ([("..\\windows", b"x")], "backslash"),
        ([("C:/boot.ini", b"x")], "absolute path"),
        ([symlink("skills/echo/main.py", "/etc/shadow")], "links and special files"),
    ],
)
def test_hostile_members_are_refused(tmp_path: Path, entries: list, reason: str) -> None:
    archive = tmp_path / "b.zip"
    archive.write_bytes(make_zip(entries))
    with pytest.raises(ArchiveError, match=reason):
        extract(archive, tmp_path / "out")
    assert not any((tmp_path / "out").rglob("*")) if (tmp_path / "out").exists() else True
    assert not (tmp_path.parent / "escape").exists()


def test_zip_bomb_fails_while_extracting(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    archive.write_bytes(make_zip([("skills/a/zeros.bin", b"\0" * (20 * 1024 * 1024))]))
    with pytest.raises(ArchiveError, match="inflates more than 200x"):
        extract(archive, tmp_path / "out", limits=Limits(max_ratio=200))


def test_total_size_and_entry_caps(tmp_path: Path) -> None:
    archive = tmp_path / "big.zip"
    archive.write_bytes(make_zip([(f"f{i}.txt", b"x" * 1000) for i in range(30)]))
    with pytest.raises(ArchiveError, match="30 entries; the limit is 20"):
        extract(archive, tmp_path / "a", limits=Limits(max_entries=20))
    with pytest.raises(ArchiveError, match="inflates past 10000 bytes"):
        extract(archive, tmp_path / "b", limits=Limits(max_total_bytes=10_000))


def test_a_tampered_size_header_fails_cleanly(tmp_path: Path) -> None:
    data = bytearray(make_zip([("skills/a/blob", b"y" * 50_000)]))
    # Rewrite the declared uncompressed size (local header and central directory) to 10 bytes.
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.index(sig)
        data[at + offset : at + offset + 4] = (10).to_bytes(4, "little")
    archive = tmp_path / "liar.zip"
    archive.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="skills/a/blob: corrupt member"):
        extract(archive, tmp_path / "out", limits=Limits(max_total_bytes=20_000))


def test_a_single_root_folder_is_stripped(tmp_path: Path) -> None:
    archive = tmp_path / "p.zip"
    archive.write_bytes(make_zip([("my-project/skills/a/skill.yaml", b"entrypoint: SKILL.md\n"), ("my-project/skills/a/SKILL.md", b"x")]))
    written = extract(archive, tmp_path / "out")
    assert sorted(written) == ["skills/a/SKILL.md", "skills/a/skill.yaml"]


def project(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "project"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ({"skills/a/skill.yaml": "entrypoint: main.py:run\nmodel: claude/sonnet-4-7\n", "skills/a/main.py": "def run(i): pass"},
         "skills/a/skill.yaml: model: only agentic skills"),
        ({"skills/a/skill.yaml": "entrypoint: SKILL.md\nmodel: claude/sonet-4-7\n", "skills/a/SKILL.md": "x"},
         "model: unknown model 'claude/sonet-4-7'; did you mean claude/sonnet-4-7"),
        ({"skills/a/skill.yaml": "entrypoint: SKILL.md\nmodel: gpt/6\n", "skills/a/SKILL.md": "x"},
         "Available: claude/haiku-4-5, claude/opus-4-5"),
        ({"skills/a/skill.yaml": "entrypoint: SKILL.md\ntimeout_seconds: 3601\n", "skills/a/SKILL.md": "x"},
         "skills/a/skill.yaml: timeout_seconds: must be a whole number of seconds from 1 to 3600"),
        ({"skills/a/skill.yaml": "entrypoint: SKILL.md\ntimeout_seconds: 0\n", "skills/a/SKILL.md": "x"},
         "timeout_seconds: must be a whole number"),
        ({"skills/a/skill.yaml": "entrypoint: SKILL.md\ndisable_bash: maybe\n", "skills/a/SKILL.md": "x"},
         "disable_bash: must be true or false"),
        ({"skills/a/skill.yaml": "entrypoint: SKILL.md\ntools:\n  - name: bash\n    description: d\n    entrypoint: tools/t.py:run\n",
          "skills/a/SKILL.md": "x", "skills/a/tools/t.py": "def run(i): pass"},
         "tools[0].name: 'bash' is a built-in tool's name"),
        ({"skills/a/skill.yaml": "entrypoint: SKILL.md\ntools:\n  - name: t\n    description: d\n    entrypoint: tools/missing.py:run\n",
          "skills/a/SKILL.md": "x"},
         "tools[0].entrypoint: tools/missing.py does not exist"),
        ({"skills/a/skill.yaml": "entrypoint: ../../etc/passwd.py:run\n"}, "must look like 'main.py:run'"),
        ({"skills/a/skill.yaml": "entrypoint: main.py:run\n", "skills/a/main.py": "def run(:\n"}, "main.py does not parse"),
        ({"skills/a/skill.yaml": "- just\n- a list\n"}, "skills/a/skill.yaml: must be a mapping"),
        ({"skills/a/skill.yaml": "entrypoint: SKILL.md\noutput_schema: {required: 5}\n", "skills/a/SKILL.md": "x"},
         "output_schema: not a valid JSON Schema"),
    ],
)
def test_each_skill_yaml_problem_is_named(tmp_path: Path, files: dict[str, str], problem: str) -> None:
    report = read_bundle(project(tmp_path, files))
    assert report.skills == []
    assert any(problem in str(p) for p in report.problems), [str(p) for p in report.problems]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    report = read_bundle(project(tmp_path, {
        "skills/a/skill.yaml": "entrypoint: missing.md\n",
        "skills/b/skill.yaml": "entrypoint: main.py:nope\n", "skills/b/main.py": "def run(i): pass\n",
        "skills/ok/skill.yaml": "entrypoint: main.py:run\n", "skills/ok/main.py": "def run(i): pass\n",
    }))
    assert [s.name for s in report.skills] == ["ok"]
    assert [p.file for p in report.problems] == ["skills/a/skill.yaml", "skills/b/skill.yaml"]


def test_a_valid_skill_keeps_its_manifest(tmp_path: Path) -> None:
    report = read_bundle(project(tmp_path, {
        "requirements.txt": "pillow\n",
        "skills/cap/skill.yaml": (
            "description: Caption.\nentrypoint: SKILL.md\nmodel: claude/sonnet-4-7\ntimeout_seconds: 120\n"
            "input_schema: {type: object}\ntools:\n  - name: measure\n    description: Measure.\n"
            "    entrypoint: tools/m.py:run\n"
        ),
        "skills/cap/SKILL.md": "You write captions.",
        "skills/cap/tools/m.py": "async def run(i):\n    return {}\n",
    }))
    assert report.problems == [] and report.has_requirements
    (skill,) = report.skills
    assert (skill.kind.value, skill.model, skill.timeout_seconds) == ("agent", "claude/sonnet-4-7", 120)
    assert skill.tools[0].name == "measure" and skill.input_schema == {"type": "object"}
