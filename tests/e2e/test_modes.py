"""`pyrmap shared` (several scripts over one input) and `pyrmap pipeline`
(each stage's result is the next stage's input)."""

import os

import numpy as np

from conftest import base_env, expect_failure


def blocks(text):
    """'== title ==' blocks of text output: [(title, [lines])]."""
    out = []
    for line in text.splitlines():
        if line.startswith("== ") and line.endswith(" =="):
            out.append((line[3:-3], []))
        else:
            assert out, "output does not start with a '== title ==' line:\n" + text
            out[-1][1].append(line)
    return out


# ------------------------------------------------------------------ shared

def test_shared_one_result_per_script_in_order(cli, scripts):
    data = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]
    a = scripts.func("mean.py", "data.mean()")
    b = scripts.func("max.py", "data.max()")
    c = scripts.func("sorted.py", "np.sort(data)")
    o = cli("shared", a, b, c, input=" ".join(map(str, data)))
    assert o.rc == 0, o
    assert blocks(o.out) == [(a, [repr(float(np.mean(data)))]), (b, ["9.0"]),
                             (c, [repr(x) for x in sorted(data)])]


def test_shared_scripts_see_the_same_read_only_input(cli, scripts, work):
    a = np.arange(1000, dtype=np.int64).reshape(10, 100)
    np.save(work / "in.npy", a)
    probe = """
        assert not data.flags.writeable
        try:
            data[0, 0] = 1
        except ValueError:
            pass
        else:
            raise AssertionError("the shared input is writable")
        return np.array([data.sum(), data.shape[0], data.shape[1], os.environ["PYRMAP_DATA"] != ""])
    """
    s1 = scripts.func("p1.py", probe)
    s2 = scripts.func("p2.py", probe)
    o = cli("shared", s1, s2, "-i", work / "in.npy", "--output-dir", work)
    assert o.rc == 0, o
    for k, name in ((1, "p1"), (2, "p2")):
        np.testing.assert_array_equal(np.load(work / ("%d-%s.npy" % (k, name))), [a.sum(), 10, 100, 1])


SPAN = """
    start = time.time()
    time.sleep(1)
    with open(os.path.join(os.environ["SPAN_DIR"], os.path.basename(__file__)), "w") as f:
        f.write(repr(start) + " " + repr(time.time()))
    return data.%s()
"""


def spans(directory, *names):
    out = []
    for name in names:
        with open(os.path.join(str(directory), os.path.basename(name))) as f:
            out.append(tuple(map(float, f.read().split())))
    return out


# Each script says it is inside its function, then waits for the other to be
# there too: both get there only if they run at the same time. (No clock is
# raced: on a busy box one interpreter may start seconds after the other.)
BARRIER = """
    d = os.environ["BARRIER_DIR"]
    open(os.path.join(d, "here-" + os.path.basename(__file__)), "w").close()
    deadline = time.monotonic() + 30
    while len([n for n in os.listdir(d) if n.startswith("here-")]) < 2:
        if time.monotonic() > deadline:
            raise SystemExit("the other script was not running at the same time")
        time.sleep(0.01)
    return data.%s()
"""


def test_shared_jobs_2_runs_concurrently(cli, scripts, work):
    a = scripts.func("slow_min.py", BARRIER % "min")
    b = scripts.func("slow_max.py", BARRIER % "max")
    o = cli("shared", "-j", "2", a, b, input="5 -2 7", env=base_env(BARRIER_DIR=str(work)))
    assert o.rc == 0, o
    assert blocks(o.out) == [(a, ["-2.0"]), (b, ["7.0"])]


def test_shared_jobs_1_runs_in_turn(cli, scripts, work):
    a = scripts.func("slow_a.py", SPAN % "sum")
    b = scripts.func("slow_b.py", SPAN % "sum")
    o = cli("shared", a, b, input="1 2", env=base_env(SPAN_DIR=str(work)))
    assert o.rc == 0, o
    assert o.seconds >= 2.0, o.seconds
    (a0, a1), (b0, b1) = spans(work, a, b)
    assert a1 <= b0, "with -j 1 the scripts overlapped: %s" % spans(work, a, b)


def test_shared_results_in_script_order_when_finishing_out_of_order(cli, scripts):
    slow = scripts.func("slow.py", "time.sleep(0.8)\nreturn data * 1")
    fast = scripts.func("fast.py", "data * 2")
    o = cli("shared", "-j", "2", slow, fast, fast, input="1 2")
    assert o.rc == 0, o
    assert blocks(o.out) == [(slow, ["1.0", "2.0"]), (fast, ["2.0", "4.0"]), (fast, ["2.0", "4.0"])]


def test_shared_output_dir(cli, scripts, work):
    a = np.linspace(0, 1, 11)
    np.save(work / "in.npy", a)
    s1 = scripts.func("cumsum.py", "np.cumsum(data)")
    s2 = scripts.write("funcs.py", """
        import numpy as np
        def outer(data):
            return np.outer(data, data).astype(np.float32)
    """)
    out = work / "results"
    out.mkdir()
    o = cli("shared", s1, s2 + "::outer", "-i", work / "in.npy", "--output-dir", out)
    assert o.rc == 0, o
    assert o.stdout == b""
    assert sorted(os.listdir(out)) == ["1-cumsum.npy", "2-funcs.npy"]
    np.testing.assert_array_equal(np.load(out / "1-cumsum.npy"), np.cumsum(a))
    r2 = np.load(out / "2-funcs.npy")
    assert r2.dtype == np.float32
    np.testing.assert_array_equal(r2, np.outer(a, a).astype(np.float32))


def test_shared_output_dir_raw(cli, scripts, work):
    s1 = scripts.func("a.py", "data.astype(np.int32)")
    s2 = scripts.func("b.py", "data > 1")
    o = cli("shared", s1, s2, "--output-dir", work, "--output-format", "raw", input="1 2 3")
    assert o.rc == 0, o
    assert (work / "1-a.bin").read_bytes() == np.array([1, 2, 3], np.int32).tobytes()
    assert (work / "2-b.bin").read_bytes() == bytes([0, 1, 1])


def test_shared_refuses_a_single_output_file(cli, scripts, work):
    s = scripts.func("a.py", "data")
    o = cli("shared", s, s, "-o", work / "x.npy", input="1")
    expect_failure(o, 2, "--output-dir")
    assert not (work / "x.npy").exists()


def test_shared_one_failing_script_fails_the_call(cli, scripts):
    good = scripts.func("good.py", "data")
    bad = scripts.func("bad.py", "raise RuntimeError('second script broke')")
    o = cli("shared", "-j", "2", good, bad, input="1 2")
    expect_failure(o, 3, "bad.py", "RuntimeError", "second script broke")


# ------------------------------------------------------------------ pipeline

def test_pipeline_feeds_each_result_to_the_next_stage(cli, scripts):
    s1 = scripts.func("scale.py", "data * 2")
    s2 = scripts.func("square.py", "data ** 2")
    s3 = scripts.func("total.py", "data.sum()")
    o = cli("pipeline", s1, s2, s3, input="1 2 3")
    assert o.rc == 0, o
    assert o.out == "56.0\n"


def test_pipeline_shapes_and_dtypes_change_between_stages(cli, scripts, work):
    a = np.arange(12, dtype=np.uint8)
    np.save(work / "in.npy", a)
    s1 = scripts.func("to_matrix.py", """
        assert data.dtype == np.uint8 and data.shape == (12,)
        return data.astype(np.int64).reshape(3, 4) * 1000
    """)
    s2 = scripts.func("to_float.py", """
        assert data.dtype == np.int64 and data.shape == (3, 4), (data.dtype, data.shape)
        return (data / 8).astype(np.float32).T
    """)
    s3 = scripts.func("to_bool.py", """
        assert data.dtype == np.float32 and data.shape == (4, 3), (data.dtype, data.shape)
        return data > 500
    """)
    o = cli("pipeline", s1, s2, s3, "-i", work / "in.npy", "-o", work / "out.npy")
    assert o.rc == 0, o
    b = np.load(work / "out.npy")
    want = ((a.astype(np.int64).reshape(3, 4) * 1000) / 8).astype(np.float32).T > 500
    assert b.dtype == np.bool_ and b.shape == (4, 3)
    np.testing.assert_array_equal(b, want)


def test_pipeline_keep_intermediate_outputs_every_stage(cli, scripts, work):
    s1 = scripts.func("scale.py", "data * 2")
    s2 = scripts.func("square.py", "(data ** 2).astype(np.int64)")
    s3 = scripts.func("total.py", "data.sum()")
    o = cli("pipeline", "-k", s1, s2, s3, input="1 2 3")
    assert o.rc == 0, o
    # Each stage printed by its own dtype: float64, then int64.
    assert blocks(o.out) == [("stage 1: " + s1, ["2.0", "4.0", "6.0"]),
                             ("stage 2: " + s2, ["4", "16", "36"]),
                             ("stage 3: " + s3, ["56"])]
    out = work / "stages"
    out.mkdir()
    o = cli("pipeline", "--keep-intermediate", s1, s2, s3, "--output-dir", out, input="1 2 3")
    assert o.rc == 0, o
    assert sorted(os.listdir(out)) == ["1-scale.npy", "2-square.npy", "3-total.npy"]
    np.testing.assert_array_equal(np.load(out / "1-scale.npy"), [2.0, 4.0, 6.0])
    r2 = np.load(out / "2-square.npy")
    assert r2.dtype == np.int64
    np.testing.assert_array_equal(r2, [4, 16, 36])
    assert np.load(out / "3-total.npy") == 56


def test_pipeline_output_dir_names_the_final_stage_by_its_number(cli, scripts, work):
    s1 = scripts.func("scale.py", "data * 2")
    s2 = scripts.func("total.py", "data.sum()")
    o = cli("pipeline", s1, s2, "--output-dir", work, input="1 2 3")
    assert o.rc == 0, o
    assert sorted(p.name for p in work.iterdir()) == ["2-total.npy"]  # as with -k
    assert np.load(work / "2-total.npy") == 12


def test_pipeline_output_file(cli, scripts, work):
    s1 = scripts.func("scale.py", "data * 2")
    s2 = scripts.func("total.py", "data.sum()")
    o = cli("pipeline", s1, s2, "-o", work / "final.npy", input="1 2 3")
    assert o.rc == 0, o
    assert o.stdout == b""
    assert np.load(work / "final.npy") == 12
    for bad in (["-k", "-o", work / "x.npy"], ["-o", work / "x.npy", "--output-dir", work]):
        o = cli("pipeline", s1, s2, *bad, input="1")
        expect_failure(o, 2, "--output-dir")
    assert not (work / "x.npy").exists()


def test_pipeline_stage_input_is_read_only(cli, scripts):
    probe = """
        try:
            data[...] = 0
        except ValueError:
            return np.array([data.flags.writeable, True])
        return np.array([data.flags.writeable, False])
    """
    s1 = scripts.func("first.py", "data + 1")
    s2 = scripts.func("probe.py", probe)
    o = cli("pipeline", s1, s2, input="1 2 3")
    assert o.rc == 0, o
    assert o.lines() == ["False", "True"]  # not writable; writing raised ValueError


def test_pipeline_single_stage(cli, scripts):
    s = scripts.func("one.py", "data[::-1]")
    o = cli("pipeline", s, input="1 2 3")
    assert o.rc == 0, o
    assert o.lines() == ["3.0", "2.0", "1.0"]


def test_pipeline_empty_intermediate_result(cli, scripts):
    s1 = scripts.func("none.py", "data[data > 10]")
    s2 = scripts.func("count.py", "np.int64(data.size)")
    o = cli("pipeline", s1, s2, input="1 2 3")
    assert o.rc == 0, o
    assert o.out == "0\n"


def test_pipeline_with_functions(cli, scripts):
    s = scripts.write("stages.py", """
        def scale(data):
            return data * 10
        def total(data):
            return data.sum()
    """)
    o = cli("pipeline", s + "::scale", s + "::scale", s + "::total", input="1 2")
    assert o.rc == 0, o
    assert o.out == "300.0\n"


def test_shared_and_pipeline_take_no_args_after_double_dash(cli, scripts, work):
    # Only `run` passes arguments after -- to its script; shared and pipeline
    # refuse them (usage error) rather than guessing which script they are
    # for: there, -a/--arg gives every script the same arguments.
    marker = work / "ran"
    s = scripts.func("a.py", "open(os.environ['MARKER'], 'w').close()\nreturn data")
    for mode in ("shared", "pipeline"):
        o = cli(mode, s, s, "--", "10", input="1", env=base_env(MARKER=str(marker)))
        assert o.rc == 2, o
        assert "10" in o.stderr and o.stdout == b""
        assert not marker.exists()


ARGV_SCRIPT = """
    with open(os.path.join(os.environ["ARGV_DIR"], "%d" % os.getpid()), "w") as f:
        f.write(repr(sys.argv[1:]))
    return data * float(sys.argv[1]) if len(sys.argv) > 1 else data
"""


def argvs_seen(directory):
    """The sys.argv[1:] of every script that ran, as recorded by ARGV_SCRIPT."""
    out = []
    for name in os.listdir(directory):
        with open(os.path.join(directory, name)) as f:
            out.append(eval(f.read()))
    return out


def test_shared_arg_option_gives_every_script_the_same_args(cli, scripts, work):
    a = scripts.func("scale_a.py", ARGV_SCRIPT)
    b = scripts.func("scale_b.py", ARGV_SCRIPT)
    argv_dir = work / "argv"
    argv_dir.mkdir()
    o = cli("shared", "-j", "2", "-a", "10", a, b, "--arg", "-x y", "--arg=--z", "-d", "int64",
            input="1 2 3", env=base_env(ARGV_DIR=str(argv_dir)))
    assert o.rc == 0, o
    # One value per -a: the scripts after it are still scripts.
    assert blocks(o.out) == [(a, ["10.0", "20.0", "30.0"]), (b, ["10.0", "20.0", "30.0"])]
    assert argvs_seen(argv_dir) == [["10", "-x y", "--z"]] * 2


def test_pipeline_arg_option_gives_every_stage_the_same_args(cli, scripts, work):
    s = scripts.func("scale.py", ARGV_SCRIPT)
    t = scripts.func("total.py", "data.sum()")
    argv_dir = work / "argv"
    argv_dir.mkdir()
    o = cli("pipeline", s, "-a", "3", s, t, "-a", "", input="1 2 3",
            env=base_env(ARGV_DIR=str(argv_dir)))
    assert o.rc == 0, o
    assert o.out == "54.0\n"  # (1 + 2 + 3) * 3 * 3
    assert argvs_seen(argv_dir) == [["3", ""]] * 2
    # Without -a the stages get no arguments.
    for name in os.listdir(argv_dir):
        os.unlink(argv_dir / name)
    o = cli("pipeline", "-k", s, t, input="1 2 3", env=base_env(ARGV_DIR=str(argv_dir)))
    assert o.rc == 0, o
    assert blocks(o.out) == [("stage 1: " + s, ["1.0", "2.0", "3.0"]), ("stage 2: " + t, ["6.0"])]
    assert argvs_seen(argv_dir) == [[]]


def test_arg_option_needs_a_value(cli, scripts):
    s = scripts.func("a.py", "data")
    for mode in ("run", "shared", "pipeline"):
        o = cli(mode, s, "-a", input="1")
        assert o.rc == 2, o
        assert "--arg" in o.stderr and o.stdout == b""


def test_pipeline_failing_middle_stage(cli, scripts):
    s1 = scripts.func("ok.py", "data")
    s2 = scripts.func("broken.py", "raise KeyError('middle stage')")
    s3 = scripts.func("never.py", "data")
    o = cli("pipeline", s1, s2, s3, input="1")
    expect_failure(o, 3, "broken.py", "KeyError", "middle stage")
