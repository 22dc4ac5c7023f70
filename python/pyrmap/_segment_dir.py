"""The segment directory, as the pyrmap core chooses it (src/segment_dir.h).

Segments and registry pages are files of a *segment directory*: the user's
choice ("RAM" = /dev/shm, "DISK", or a directory path), else the environment
variable PYRMAP_SEGMENT_DIR, else /dev/shm. "DISK" is ``pyrmap-<uid>`` in the
first of /var/tmp, $TMPDIR and /tmp that is a writable directory on a file
system other than tmpfs/ramfs (when none is, the first writable one).

A directory is used only when other users cannot replace or remove files in
it: it is ours and not writable by group or others, or it is sticky (like
/dev/shm and /tmp) and owned by root or us. This module only resolves and
checks; it never creates a directory (the Python side reads what R or the
command made). It does not import numpy.
"""

from __future__ import annotations

import os
import stat

SHM_DIR = "/dev/shm"
ENV = "PYRMAP_SEGMENT_DIR"

# statfs f_type values of RAM-backed file systems (linux/magic.h).
_RAM_FS_NAMES = ("tmpfs", "ramfs")


def _is_ram_fs(path: str) -> bool:
    """Whether `path` lies on tmpfs or ramfs (from /proc/self/mounts: the
    longest mount point that contains it)."""
    try:
        real = os.path.realpath(path)
        best, kind = "", ""
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                point = parts[1].replace("\\040", " ")
                if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                    best, kind = point, parts[2]
        return kind in _RAM_FS_NAMES
    except OSError:
        return False


def disk_dir() -> str:
    """The directory "DISK" stands for (it may not exist yet)."""
    bases = ["/var/tmp"]
    tmpdir = os.environ.get("TMPDIR", "")
    if tmpdir.startswith("/"):
        bases.append(tmpdir)
    bases.append("/tmp")
    first = ""
    for b in bases:
        if not os.path.isdir(b) or not os.access(b, os.W_OK | os.X_OK):
            continue
        if not first:
            first = b
        if not _is_ram_fs(b):
            return "%s/pyrmap-%d" % (b, os.geteuid())
    return "%s/pyrmap-%d" % (first or "/tmp", os.geteuid())


def resolve(choice: str | None = None) -> str:
    """The absolute path `choice` stands for: None or "" (then
    PYRMAP_SEGMENT_DIR, else /dev/shm), "RAM", "DISK" or a directory."""
    c = choice or os.environ.get(ENV, "")
    if not isinstance(c, str):
        raise TypeError("segment_dir must be a string: 'RAM', 'DISK' or a directory path")
    if not c or c == "RAM":
        return SHM_DIR
    if c == "DISK":
        return disk_dir()
    if "\0" in c or "\n" in c:
        raise ValueError("a segment directory's path must not contain a NUL or a newline: %r" % c)
    return os.path.realpath(os.path.abspath(c))


def _user(uid: int) -> str:
    try:
        import pwd
        return "%s (uid %d)" % (pwd.getpwuid(uid).pw_name, uid)
    except (ImportError, KeyError):
        return "uid %d" % uid


def check_safe(st: os.stat_result, path: str) -> None:
    """Raises PermissionError unless a directory with this stat cannot have
    its entries replaced by other users (see the module's docstring)."""
    me = os.geteuid()
    others_write = bool(st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))
    sticky = bool(st.st_mode & stat.S_ISVTX)
    if (st.st_uid == me and not others_write) or (sticky and st.st_uid in (0, me)):
        return
    raise PermissionError(
        "segment directory %s is not safe to use: it is owned by %s with mode %04o, so other "
        "users could replace the files in it" % (path, _user(st.st_uid), st.st_mode & 0o7777))


def open_dir(choice: str | None = None) -> tuple[int, str]:
    """Opens the segment directory `choice` (see resolve) and checks it:
    (descriptor, path); the caller closes the descriptor. FileNotFoundError
    (naming the directory and what was asked) if it does not exist."""
    path = resolve(choice)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FileNotFoundError(
            2, "segment directory %s does not exist (segment_dir=%r; pyrmap makes it when "
            "something is first put there)" % (path, choice or os.environ.get(ENV) or "RAM"),
            path) from None
    try:
        check_safe(os.fstat(fd), path)
    except BaseException:
        os.close(fd)
        raise
    return fd, path
