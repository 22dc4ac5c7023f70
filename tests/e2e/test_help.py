"""--help on every subcommand shows examples and the exit codes that apply
there, from the same table as README.md's; parser errors carry the
`pyrmap:` prefix; --version gives the one release number every part
carries."""

import os
import re
import subprocess

import pytest

from conftest import NUMPY_PYTHON, REPO

SUBCOMMANDS = ["run", "shared", "pipeline", "ls", "gc"]


def exit_code_table(cli, fmt):
    o = cli("--exit-code-table=" + fmt)
    assert o.rc == 0 and o.stderr == "", o
    return o.out


def test_exit_code_table_has_every_code(cli):
    rows = [l for l in exit_code_table(cli, "markdown").splitlines()[2:]]
    codes = [r.split("|")[1].strip() for r in rows]
    assert codes == ["0", "1", "2", "3", "4", "5", "6", "7", "128+N"], rows
    # The text form is the same table: the same codes and meanings, without
    # markdown's code quotes.
    text = exit_code_table(cli, "text").splitlines()
    assert len(text) == len(rows)
    for md, line in zip(rows, text):
        code, meaning = [c.strip() for c in md.split("|")[1:3]]
        assert line.split(None, 1) == [code, meaning.replace("`", "")], (md, line)


def test_readme_exit_code_table_is_the_commands(cli):
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    section = readme[readme.index("### Exit codes"):]
    start = section.index("| code |")
    end = section.index("\n\n", start)
    assert section[start:end + 1] == exit_code_table(cli, "markdown")


# The codes each --help lists: those that can happen there.
SEGMENT_CODES = ["0", "1", "2", "6"]


@pytest.mark.parametrize("args", [["--help"]] + [[sub, "--help"] for sub in SUBCOMMANDS])
def test_help_ends_with_the_exit_codes_that_apply(cli, args):
    o = cli(*args)
    assert o.rc == 0, o
    table = exit_code_table(cli, "text")
    if args[0] in ("ls", "gc"):
        # ls and gc run no script: no script, timeout, protocol, interpreter
        # or signal codes.
        table = "".join(l + "\n" for l in table.splitlines() if l.split()[0] in SEGMENT_CODES)
    assert o.out.endswith("Exit codes:\n" + table), o


@pytest.mark.parametrize("args", [["--help"]] + [[sub, "--help"] for sub in SUBCOMMANDS])
def test_help_shows_examples_of_the_command(cli, args):
    o = cli(*args)
    assert o.rc == 0, o
    section = o.out[o.out.index("\nExamples:\n") + len("\nExamples:\n"):o.out.index("\nExit codes:")]
    examples = [l.split("#")[0].strip() for l in section.splitlines() if l.strip()]
    assert len(examples) >= 2, o
    for line in examples:
        # Every example is a pyrmap command line, of this subcommand.
        words = line.split("|")[-1].split()
        assert words[0] == "pyrmap", line
        if args[0] != "--help":
            assert words[1] == args[0], line
        else:
            assert words[1] in SUBCOMMANDS, line
    if args[0] == "--help":
        assert {l.split("|")[-1].split()[1] for l in examples} >= {"run", "shared", "pipeline", "ls"}, o


def test_gc_help_documents_the_dry_run(cli):
    o = cli("gc", "--help")
    line = next((l for l in o.lines() if l.lstrip().startswith("-n,--dry-run")), None)
    assert line is not None and "Dry run" in line and "remove nothing" in line, o
    assert "pyrmap gc -n" in o.out, o


def test_exit_code_table_rejects_an_unknown_format(cli):
    o = cli("--exit-code-table=html")
    assert o.rc == 2, o
    assert "html" in o.stderr and o.out == "", o


def test_hidden_options_are_not_in_the_help(cli):
    o = cli("--help")
    assert "--exit-code-table" not in o.out and "--protocol-constants" not in o.out, o


def test_top_level_help_lists_subcommands(cli):
    o = cli("--help")
    for sub in SUBCOMMANDS:
        assert re.search(r"^\s+%s\s" % sub, o.out, re.M), (sub, o)


def read(*parts):
    with open(os.path.join(REPO, *parts), encoding="utf-8") as f:
        return f.read()


def release():
    """The release number, from its one definition: src/version.h."""
    return re.search(r'^#define PYRMAP_VERSION "([^"]+)"$', read("src", "version.h"), re.M).group(1)


def test_version(cli):
    for flag in ("--version", "-V"):
        o = cli(flag)
        assert o.rc == 0, o
        assert o.out.startswith("pyrmap %s " % release()), o
        assert re.search(r"exchange header \d+\.\d+", o.out), o


def test_every_part_carries_the_release_of_version_h():
    version = release()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    pyproject = re.search(r'^version = "([^"]+)"$', read("python", "pyproject.toml"), re.M).group(1)
    assert pyproject == version, "python/pyproject.toml"
    description = re.search(r"^Version: (\S+)$", read("r-pkg", "DESCRIPTION"), re.M).group(1)
    assert description == version, "r-pkg/DESCRIPTION"
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "python"), PYTHONDONTWRITEBYTECODE="1")
    p = subprocess.run([NUMPY_PYTHON, "-c", "import pyrmap; print(pyrmap.__version__)"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == version, "python/pyrmap/__init__.py"


def test_every_part_carries_the_license_of_the_license_file():
    """LICENSE is the Apache License 2.0; the R package's DESCRIPTION and the
    Python package's metadata say so, and the Python package ships the file."""
    text = read("LICENSE")
    assert text.lstrip().startswith("Apache License\n                           Version 2.0, January 2004")
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert re.search(r"^License: Apache License \(== 2\.0\)$", read("r-pkg", "DESCRIPTION"), re.M)
    assert re.search(r'^license = \{text = "Apache-2\.0"\}$', read("python", "pyproject.toml"), re.M)
    assert read("python", "LICENSE") == text


@pytest.mark.parametrize("args,needle", [
    ([], "subcommand is required"),
    (["run"], "script is required"),
    (["run", "x.py", "--bogus"], "--bogus"),
    (["run", "x.py", "--order", "X"], "--order"),
    (["run", "x.py", "--timeout", "-1"], "--timeout"),
    (["shared", "x.py", "-j", "0"], "--jobs"),
])
def test_usage_errors_exit_2(cli, args, needle):
    o = cli(*args)
    assert o.rc == 2, o
    assert needle in o.stderr, o


@pytest.mark.parametrize("args,help", [
    ([], "pyrmap --help"),
    (["run"], "pyrmap run --help"),
    (["run", "x.py", "--bogus"], "pyrmap run --help"),
    (["shared", "x.py", "-j", "0"], "pyrmap shared --help"),
    (["ls", "--bogus"], "pyrmap ls --help"),
    (["gc", "-n", "extra"], "pyrmap gc --help"),
])
def test_parser_errors_read_like_the_commands_other_errors(cli, args, help):
    """`pyrmap: <what is wrong>`, then where to read more: the help of the
    subcommand being parsed."""
    o = cli(*args)
    assert o.rc == 2 and o.out == "", o
    lines = o.stderr.splitlines()
    assert len(lines) == 2, o
    assert lines[0].startswith("pyrmap: ") and len(lines[0]) > len("pyrmap: "), o
    assert lines[1] == "Run '%s' for more information." % help, o


@pytest.mark.parametrize("sub,text", [
    ("run", "These come before the arguments after --"),
    ("shared", "Every script gets the same arguments"),
    ("pipeline", "Every script gets the same arguments"),
])
def test_help_documents_the_arg_option(cli, sub, text):
    o = cli(sub, "--help")
    assert o.rc == 0, o
    line = next((l for l in o.lines() if l.lstrip().startswith("-a,--arg ARG")), None)
    assert line is not None, o
    assert "sys.argv[1:]" in line and "repeat" in line and text in line, line
