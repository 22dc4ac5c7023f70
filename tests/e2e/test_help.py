"""--help on every subcommand lists the exit codes; --version the release."""

import os
import re

import pytest

from conftest import REPO

SUBCOMMANDS = ["run", "shared", "pipeline", "ls", "gc"]
EXIT_CODES = ["0  success", "2  usage error", "3  the script failed", "4  the script exceeded --timeout",
              "5  protocol error", "6  system error", "7  the Python interpreter",
              "130/143  interrupted by SIGINT/SIGTERM"]


@pytest.mark.parametrize("args", [["--help"]] + [[sub, "--help"] for sub in SUBCOMMANDS])
def test_help_lists_exit_codes(cli, args):
    o = cli(*args)
    assert o.rc == 0, o
    assert "Exit codes:" in o.out, o
    for line in EXIT_CODES:
        assert line in o.out, (line, o)


def test_top_level_help_lists_subcommands(cli):
    o = cli("--help")
    for sub in SUBCOMMANDS:
        assert re.search(r"^\s+%s\s" % sub, o.out, re.M), (sub, o)


def test_version(cli):
    with open(os.path.join(REPO, "src", "version.h")) as f:
        version = re.search(r'#define PYRMAP_VERSION "([^"]+)"', f.read()).group(1)
    for flag in ("--version", "-V"):
        o = cli(flag)
        assert o.rc == 0, o
        assert o.out.startswith("pyrmap %s " % version), o
        assert re.search(r"exchange header \d+\.\d+", o.out), o


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
