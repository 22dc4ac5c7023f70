"""Every command in examples/README.md, run as written (through bash, from
the top of the tree) with `build/pyrmap` replaced by the binary under test
and /tmp/ by a private directory; the output must match the README exactly
(stdout and stderr together)."""

import os
import re
import subprocess

import pytest

from conftest import PYRMAP, REPO, base_env

README = os.path.join(REPO, "examples", "README.md")


def console_blocks():
    with open(README) as f:
        text = f.read()
    blocks = []
    for body in re.findall(r"```console\n(.*?)```", text, re.S):
        steps = []
        for line in body.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                assert steps, "a console block must start with '$ ': %r" % body
                steps[-1][1].append(line)
        blocks.append(steps)
    return blocks


BLOCKS = console_blocks()


@pytest.mark.parametrize("steps", BLOCKS, ids=[b[0][0][:60] for b in BLOCKS])
def test_readme_commands(steps, tmp_path):
    for command, expected in steps:
        # /tmp/ first: the binary's own path may lie under /tmp.
        cmd = command.replace("/tmp/", "%s/" % tmp_path).replace("build/pyrmap", "'%s'" % PYRMAP)
        r = subprocess.run(["bash", "-c", cmd], cwd=REPO, env=base_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        got = r.stdout.decode().splitlines()
        assert got == expected, "$ %s\nexit %d\ngot:\n%s" % (command, r.returncode, "\n".join(got))
        if not any(line.startswith("exit ") for line in expected):
            assert r.returncode == 0, command


def test_every_example_is_in_the_readme():
    with open(README) as f:
        text = f.read()
    scripts = sorted(n for n in os.listdir(os.path.join(REPO, "examples")) if n.endswith(".py"))
    assert scripts
    for name in scripts:
        assert "examples/" + name in text, name
