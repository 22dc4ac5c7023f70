// output.h — writing results: as text on stdout, or to a file (.npy, .npz,
// raw bytes or text), or one file per result in a directory.
//
// Writing to a path never replaces what is there with something else:
//  - a device, a FIFO or another non-regular file is opened and written in
//    place (so `-o /dev/null` stays the null device, a FIFO feeds its
//    reader);
//  - a symlink is followed, as the kernel follows it (fs.protected_symlinks
//    applies): its final target gets the data and the link stays a link;
//  - a regular file (or a new one) is written to a fresh temporary name in
//    the target's own directory (created exclusively, never through a
//    symlink) and renamed over the target, so a failure never leaves half a
//    file; an existing file keeps its mode (and, when we are root, its owner
//    and group), a new one gets 0666 minus the umask. (Like any atomic save,
//    this gives the name a new inode: other hard links keep the old data.)
#pragma once

#include <string>
#include <vector>

#include "error.h"
#include "options.h"
#include "progress.h"
#include "run.h"

namespace pyrmap::cli {

// The format a result is written in: `format` unless it is "auto", else
// text for stdout (empty or "-"), npy for a path ending in ".npy", npz for
// one ending in ".npz", raw for any other path. A result of several arrays
// (a dict, list, tuple or frame of numeric arrays) is written as .npz (its
// names as member names; unnamed ones arr_0, arr_1, ...) or as text (each
// array headed by "== name =="); npy or raw output refuses it, and so does
// every format a result holding strings, categories, date-times, nested
// lists or missing values (Error(kUsage) naming the element).
std::string FormatFor(const std::string& path, const std::string& format);

// Checks, before any script runs, that the outputs can be written: the
// output file's directory (or, for a device or FIFO, the file itself), or
// the output directory, exists and is writable. Throws Error(kUsage).
void CheckOutputWritable(const OutputOptions& o);

// Writes one result to `path` (empty or "-": stdout) in `format` (see
// FormatFor). Throws Error(kSystem) naming the path, the call and errno.
// `progress` (may be null) is told when it is written.
void WriteResult(const Result& r, const std::string& path, const std::string& format,
                 const Progress* progress = nullptr);

// Writes several results: into dir/<k>-<stem>.<ext> when output_dir is set
// (k counts from `first_number`: a pipeline's final stage alone keeps its
// stage number), else as text blocks on stdout headed by "== <title> ==".
void WriteResults(const std::vector<Result>& results, const std::vector<std::string>& titles,
                  const OutputOptions& o, size_t first_number = 1,
                  const Progress* progress = nullptr);

// Prints the scripts' Python warnings on stderr, one line each:
// "pyrmap: warning: script 'a.py': UserWarning: text (a.py:3)".
void ReportWarnings(const std::vector<Result>& results);
void ReportWarnings(const Error& e);

}  // namespace pyrmap::cli
