"""Bundle safety and validation: every hostile archive fails cleanly, every skill.yaml problem
is named with its file and field."""

from __future__ import annotations

import io
import stat
import warnings
import zipfile
from pathlib import Path

import pytest
from puras_common.archive import ArchiveError, Limits, extract
from puras_deployments.bundle import read_bundle


def make_zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        warnings.simplefilter("ignore")  # duplicate names are written on purpose
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
        ([("skills/a/" + "n" * 300, b"x")], "name too long"),
        ([("skills/a/main.py", b"1"), ("skills/a/main.py", b"2")], "appears twice"),
        ([("skills/a/main.py", b"1"), ("skills/./a/main.py", b"2")], "appears twice"),
        ([("skills/a", b"file"), ("skills/a/main.py", b"2")], "both a file and a directory"),
    ],
)
def test_hostile_members_are_refused(tmp_path: Path, entries: list, reason: str) -> None:
    archive = tmp_path / "b.zip"
    archive.write_bytes(make_zip(entries))
    with pytest.raises(ArchiveError, match=reason):
        extract(archive, tmp_path / "out")
    assert not any((tmp_path / "out").rglob("*")) if (tmp_path / "out").exists() else True
    assert not (tmp_path.parent / "escape").exists()


def _patch_headers(
    data: bytes, *, local: int, central: int, value: bytes, mask: bool = False
) -> bytes:
    """Rewrite a field of the last member's local header and central directory entry."""
    out = bytearray(data)
    for sig, offset in ((b"PK\x03\x04", local), (b"PK\x01\x02", central)):
        at = out.rindex(sig) + offset
        if mask:
            out[at] |= value[0]
        else:
            out[at : at + len(value)] = value
    return bytes(out)


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        (
            {"local": 6, "central": 8, "value": b"\x01", "mask": True},
            "encrypted members are not supported",
        ),
        (
            {"local": 8, "central": 10, "value": (99).to_bytes(2, "little")},
            "unsupported compression method 99",
        ),
    ],
)
def test_members_that_cannot_be_read_faithfully_are_refused(
    tmp_path: Path, patch: dict, reason: str
) -> None:
    archive = tmp_path / "b.zip"
    archive.write_bytes(
        _patch_headers(make_zip([("README", b"r"), ("skills/a/main.py", b"x")]), **patch)
    )
    with pytest.raises(ArchiveError, match=reason):
        extract(archive, tmp_path / "out")


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
    archive.write_bytes(
        make_zip(
            [
                ("my-project/skills/a/skill.yaml", b"entrypoint: SKILL.md\n"),
                ("my-project/skills/a/SKILL.md", b"x"),
            ]
        )
    )
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
        (
            {
                "skills/a/skill.yaml": "entrypoint: main.py:run\nmodel: claude/sonnet-4-7\n",
                "skills/a/main.py": "def run(i): pass",
            },
            "skills/a/skill.yaml: model: only agentic skills",
        ),
        (
            {
                "skills/a/skill.yaml": "entrypoint: SKILL.md\nmodel: claude/sonet-4-7\n",
                "skills/a/SKILL.md": "x",
            },
            "model: unknown model 'claude/sonet-4-7'; did you mean claude/sonnet-4-7",
        ),
        (
            {
                "skills/a/skill.yaml": "entrypoint: SKILL.md\nmodel: gpt/6\n",
                "skills/a/SKILL.md": "x",
            },
            "Available: claude/haiku-4-5, claude/opus-4-5",
        ),
        (
            {
                "skills/a/skill.yaml": "entrypoint: SKILL.md\ntimeout_seconds: 3601\n",
                "skills/a/SKILL.md": "x",
            },
            "skills/a/skill.yaml: timeout_seconds: must be a whole number of seconds from 1 to 3600",
        ),
        (
            {
                "skills/a/skill.yaml": "entrypoint: SKILL.md\ntimeout_seconds: 0\n",
                "skills/a/SKILL.md": "x",
            },
            "timeout_seconds: must be a whole number",
        ),
        (
            {
                "skills/a/skill.yaml": "entrypoint: SKILL.md\ndisable_bash: maybe\n",
                "skills/a/SKILL.md": "x",
            },
            "disable_bash: must be true or false",
        ),
        (
            {
                "skills/a/skill.yaml": "entrypoint: SKILL.md\ntools:\n  - name: bash\n    description: d\n    entrypoint: tools/t.py:run\n",
                "skills/a/SKILL.md": "x",
                "skills/a/tools/t.py": "def run(i): pass",
            },
            "tools[0].name: 'bash' is a built-in tool's name",
        ),
        (
            {
                "skills/a/skill.yaml": "entrypoint: SKILL.md\ntools:\n  - name: t\n    description: d\n    entrypoint: tools/missing.py:run\n",
                "skills/a/SKILL.md": "x",
            },
            "tools[0].entrypoint: tools/missing.py does not exist",
        ),
        (
            {"skills/a/skill.yaml": "entrypoint: ../../etc/passwd.py:run\n"},
            "must look like 'main.py:run'",
        ),
        (
            {"skills/a/skill.yaml": "entrypoint: main.py:run\n", "skills/a/main.py": "def run(:\n"},
            "main.py does not parse",
        ),
        ({"skills/a/skill.yaml": "- just\n- a list\n"}, "skills/a/skill.yaml: must be a mapping"),
        (
            {
                "skills/a/skill.yaml": "entrypoint: SKILL.md\noutput_schema: {required: 5}\n",
                "skills/a/SKILL.md": "x",
            },
            "output_schema: not a valid JSON Schema",
        ),
        (
            {
                "skills/a/skill.yaml": "description: [not, text]\nentrypoint: SKILL.md\n",
                "skills/a/SKILL.md": "x",
            },
            "skills/a/skill.yaml: description: must be a string",
        ),
        ({"skills/a/skill.yaml": "description: x\n"}, "skills/a/skill.yaml: entrypoint: required"),
        (
            {"skills/a/skill.yaml": "entrypoint: SKILL.md\n"},
            "skills/a/skill.yaml: entrypoint: SKILL.md does not exist",
        ),
        (
            {
                "skills/a/skill.yaml": "entrypoint: main.py:run\nnetwork: sometimes\n",
                "skills/a/main.py": "def run(i): pass",
            },
            "skills/a/skill.yaml: network: must be true",
        ),
        (
            {
                "skills/a/skill.yaml": "entrypoint: main.py:run\ntools: []\n",
                "skills/a/main.py": "def run(i): pass",
            },
            "skills/a/skill.yaml: tools: only agentic skills",
        ),
        (
            {
                "skills/a/skill.yaml": "entrypoint: SKILL.md\ntools: {name: t}\n",
                "skills/a/SKILL.md": "x",
            },
            "skills/a/skill.yaml: tools: must be a list",
        ),
        (
            {
                "skills/a/skill.yaml": "entrypoint: SKILL.md\ntools: [just-a-name]\n",
                "skills/a/SKILL.md": "x",
            },
            "skills/a/skill.yaml: tools[0]: must be a mapping",
        ),
        (
            {
                "skills/a/skill.yaml": "entrypoint: SKILL.md\ntools:\n  - name: 'has space'\n    description: d\n    entrypoint: t.py:run\n",
                "skills/a/SKILL.md": "x",
                "skills/a/t.py": "def run(i): pass",
            },
            "tools[0].name: required, matching",
        ),
        (
            {
                "skills/a/skill.yaml": (
                    "entrypoint: SKILL.md\ntools:\n  - {name: t, description: d, entrypoint: 't.py:run'}\n"
                    "  - {name: t, description: d, entrypoint: 't.py:run'}\n"
                ),
                "skills/a/SKILL.md": "x",
                "skills/a/t.py": "def run(i): pass",
            },
            "tools[1].name: tool 't' is declared twice",
        ),
        (
            {
                "skills/a/skill.yaml": "entrypoint: SKILL.md\ntools:\n  - {name: t, entrypoint: 't.py:run'}\n",
                "skills/a/SKILL.md": "x",
                "skills/a/t.py": "def run(i): pass",
            },
            "tools[0].description: required",
        ),
        (
            {
                "skills/a/skill.yaml": "entrypoint: SKILL.md\ntools:\n  - {name: t, description: d, entrypoint: 't.py:run', extra: 1}\n",
                "skills/a/SKILL.md": "x",
                "skills/a/t.py": "def run(i): pass",
            },
            "tools[0].extra: unknown field",
        ),
        (
            {
                "skills/a/skill.yaml": "entrypoint: SKILL.md\ntools:\n  - {name: t, description: d, entrypoint: 't.py:run', input_schema: {type: 7}}\n",
                "skills/a/SKILL.md": "x",
                "skills/a/t.py": "def run(i): pass",
            },
            "tools[0].input_schema: not a valid JSON Schema",
        ),
        (
            {
                "skills/a/skill.yaml": "entrypoint: SKILL.md\ntools:\n  - {name: t, description: d}\n",
                "skills/a/SKILL.md": "x",
            },
            "tools[0].entrypoint: required",
        ),
        (
            {
                "skills/a/skill.yaml": "entrypoint: SKILL.md\n" + "# padding\n" * 30_000,
                "skills/a/SKILL.md": "x",
            },
            "skill.yaml is 300021 bytes; the limit is 262144",
        ),
    ],
)
def test_each_skill_yaml_problem_is_named(
    tmp_path: Path, files: dict[str, str], problem: str
) -> None:
    report = read_bundle(project(tmp_path, files))
    assert report.skills == []
    assert any(problem in str(p) for p in report.problems), [str(p) for p in report.problems]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    report = read_bundle(
        project(
            tmp_path,
            {
                "skills/a/skill.yaml": "entrypoint: missing.md\n",
                "skills/b/skill.yaml": "entrypoint: main.py:nope\n",
                "skills/b/main.py": "def run(i): pass\n",
                "skills/ok/skill.yaml": "entrypoint: main.py:run\n",
                "skills/ok/main.py": "def run(i): pass\n",
            },
        )
    )
    assert [s.name for s in report.skills] == ["ok"]
    assert [p.file for p in report.problems] == ["skills/a/skill.yaml", "skills/b/skill.yaml"]


def test_a_valid_skill_keeps_its_manifest(tmp_path: Path) -> None:
    report = read_bundle(
        project(
            tmp_path,
            {
                "requirements.txt": "pillow\n",
                "skills/cap/skill.yaml": (
                    "description: Caption.\nentrypoint: SKILL.md\nmodel: claude/sonnet-4-7\ntimeout_seconds: 120\n"
                    "input_schema: {type: object}\ntools:\n  - name: measure\n    description: Measure.\n"
                    "    entrypoint: tools/m.py:run\n"
                ),
                "skills/cap/SKILL.md": "You write captions.",
                "skills/cap/tools/m.py": "async def run(i):\n    return {}\n",
            },
        )
    )
    assert report.problems == [] and report.has_requirements
    (skill,) = report.skills
    assert (skill.kind.value, skill.model, skill.timeout_seconds) == (
        "agent",
        "claude/sonnet-4-7",
        120,
    )
    assert skill.tools[0].name == "measure" and skill.input_schema == {"type": "object"}


def test_a_project_without_skills_is_refused(tmp_path: Path) -> None:
    report = read_bundle(
        project(tmp_path, {"skills/notes.txt": "no skill here", "skills/empty/README": "x"})
    )
    assert [str(p) for p in report.problems] == [
        "skills/: no skills found: add skills/<name>/skill.yaml for at least one skill"
    ]


OK_SKILL = {
    "skills/a/skill.yaml": "entrypoint: main.py:run\n",
    "skills/a/main.py": "def run(i): pass\n",
}


@pytest.mark.parametrize(
    ("requirements", "problem"),
    [
        ("-r other.txt\n", "requirements.txt: line 1: -r refers to another file"),
        (
            "pillow\n--requirement=dev.txt\n",
            "requirements.txt: line 2: --requirement refers to another file",
        ),
        ("-e ./libs/helper\n", "requirements.txt: line 1: -e refers to another file"),
        ("-c constraints.txt\n", "requirements.txt: line 1: -c refers to another file"),
        ("./vendor/pkg.whl\n", "requirements.txt: line 1: local paths are not installable here"),
        (
            "pkg @ file:///opt/pkg.whl\n",
            "requirements.txt: line 1: local paths are not installable here",
        ),
        (
            "--find-links /opt/wheels\n",
            "requirements.txt: line 1: --find-links must be an http(s) URL",
        ),
        (
            "# deps\nrequests \\\n  >=2\n-f ../wheels\n",
            "requirements.txt: line 4: -f must be an http(s) URL",
        ),
        ("pillow\n" * 10_000, "requirements.txt: is 70000 bytes; the limit is 65536"),
    ],
)
def test_requirements_that_point_outside_the_file_are_refused(
    tmp_path: Path, requirements: str, problem: str
) -> None:
    root = project(tmp_path, OK_SKILL)
    (root / "requirements.txt").write_text(requirements)
    report = read_bundle(root)
    assert report.requirements is None
    assert any(problem in str(p) for p in report.problems), [str(p) for p in report.problems]


def test_requirements_from_indexes_and_urls_are_kept(tmp_path: Path) -> None:
    root = project(tmp_path, OK_SKILL)
    text = (
        "# pinned\n--index-url https://pypi.org/simple\n--find-links=https://example.com/wheels/\n"
        "pillow>=10  # images\nrequests[socks]==2.32.3 ; python_version >= '3.8'\n"
        "pkg @ https://example.com/pkg-1.0-py3-none-any.whl#sha256=abc\n--no-index\n"
    )
    (root / "requirements.txt").write_text(text)
    report = read_bundle(root)
    assert report.problems == [] and report.requirements == text


def test_requirements_must_be_utf8_text(tmp_path: Path) -> None:
    root = project(tmp_path, OK_SKILL)
    (root / "requirements.txt").write_bytes(b"pillow\xff\n")
    report = read_bundle(root)
    assert [str(p) for p in report.problems] == ["requirements.txt: is not UTF-8 text"]


def test_network_defaults_to_on_and_can_be_turned_off(tmp_path: Path) -> None:
    report = read_bundle(
        project(
            tmp_path,
            {
                **OK_SKILL,
                "skills/offline/skill.yaml": "entrypoint: main.py:run\nnetwork: false\n",
                "skills/offline/main.py": "def run(i): pass\n",
            },
        )
    )
    assert {s.name: s.network for s in report.skills} == {"a": True, "offline": False}


SCHEDULED = (
    "entrypoint: main.py:run\ninput_schema: {type: object, properties: {n: {type: integer}}}\n"
)


@pytest.mark.parametrize(
    ("schedules", "problem"),
    [
        ("schedules: {cron: '* * * * *'}", "schedules: must be a list"),
        (
            "schedules: [" + ", ".join(f"{{name: s{i}, cron: '@daily'}}" for i in range(11)) + "]",
            "schedules: must be a list of at most 10 schedules",
        ),
        ("schedules: [{timezone: UTC}]", "schedules[0].cron: required"),
        ("schedules: [{cron: '99 * * * *'}]", "schedules[0].cron: cron '99 * * * *' is not"),
        ("schedules: [{cron: '* * * * *', timezone: Moon/Base}]", "schedules[0].timezone:"),
        ("schedules: [{cron: '* * * * *', inputs: {n: two}}]", "schedules[0].inputs: do not match"),
        ("schedules: [{cron: '* * * * *', missed: later}]", "schedules[0].missed: must be"),
        ("schedules: [{cron: '* * * * *', catch_up_limit: 101}]", "catch_up_limit: must be"),
        ("schedules: [{cron: '* * * * *', every: 2}]", "schedules[0].every: unknown field"),
        (
            "schedules: [{name: a, cron: '* * * * *'}, {name: a, cron: '0 * * * *'}]",
            "schedules[1].name: schedule 'a' is declared twice",
        ),
    ],
)
def test_each_schedule_problem_is_named(tmp_path: Path, schedules: str, problem: str) -> None:
    report = read_bundle(
        project(
            tmp_path,
            {
                "skills/a/skill.yaml": SCHEDULED + schedules + "\n",
                "skills/a/main.py": "def run(i): pass",
            },
        )
    )
    assert report.skills == []
    assert any(problem in str(p) for p in report.problems), [str(p) for p in report.problems]


def test_declared_schedules_are_kept_with_their_defaults(tmp_path: Path) -> None:
    report = read_bundle(
        project(
            tmp_path,
            {
                "skills/a/skill.yaml": SCHEDULED
                + "schedules:\n  - {cron: '0 9 * * 1-5', timezone: Europe/Berlin, inputs: {n: 1}}\n"
                + "  - {name: hourly, cron: '@hourly', missed: catch_up}\n",
                "skills/a/main.py": "def run(i): pass",
            },
        )
    )
    assert report.problems == []
    first, second = report.skills[0].schedules
    assert (first.name, first.timezone, first.inputs, first.missed) == (
        "schedule-0",
        "Europe/Berlin",
        {"n": 1},
        "skip",
    )
    assert (second.name, second.missed, second.catch_up_limit) == ("hourly", "catch_up", 1)
    ten = "schedules: [" + ", ".join(f"{{name: s{i}, cron: '@daily'}}" for i in range(10)) + "]"
    report = read_bundle(
        project(
            tmp_path / "ten",
            {"skills/a/skill.yaml": SCHEDULED + ten + "\n", "skills/a/main.py": "def run(i): pass"},
        )
    )
    assert report.problems == [] and len(report.skills[0].schedules) == 10
