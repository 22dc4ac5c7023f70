// outcome.h — judging how a script's run ended.
//
// After a job's process has exited (or was killed for its timeout), its
// exit status, its exchange header, whether its bootstrap started, and the
// end of its stderr together say what happened. JudgeOutcome turns that into
// the script's Result or the one Error that says why there is none, in the
// user's terms (see the table in docs/protocol.md, "The caller's checks").
//
// Texts that come from the script (its traceback, its stderr) are made valid
// UTF-8 here, so that every message the core gives is.
#pragma once

#include "job.h"
#include "run.h"

namespace pyrmap {

// Checks how `job` ended and returns its result; throws on any failure:
// kTimeout, kScript (an exception with its Python type and traceback, an
// exit status or signal, no result), kInterpreter (the interpreter is not a
// working Python with pyrmap and numpy), kProtocol (a header or payload that
// breaks the protocol). The payload is mapped (with options.result_map) only
// when `map` is set. Records in the job where its result lies.
Result JudgeOutcome(Job& job, const RunOptions& options, bool map);

// For a job that ended before it was given its input: it failed (throws
// that), or it broke the protocol by writing a result without one.
[[noreturn]] void JudgeEarlyExit(Job& job, const RunOptions& options);

// Decodes the table of a mapped table result into r.table; throws
// Error(kProtocol) naming `who` (e.g. "script 'a.py'") for a bad block.
// Buffers in the input block are allowed when `input_size` (its size) is
// given.
void DecodeResultTable(Result& r, const std::string& who,
                       std::optional<uint64_t> input_size = std::nullopt);

// The last `max_lines` non-empty lines of `text`.
std::string TailLines(const std::string& text, size_t max_lines);

// The message of a Python exception of type `type` (as recorded:
// "pyrmap.FunctionNotFound") whose formatted traceback is `text`: its last
// line, without the "<type>: " it starts with (the type with or without
// its module).
std::string PythonMessage(const std::string& type, const std::string& text);

}  // namespace pyrmap
