#include "outcome.h"

#include <algorithm>
#include <vector>

#include <fmt/format.h>

#include "error.h"
#include "utf8.h"

namespace pyrmap {

namespace {

// Bytes of a meta segment read back after a script ends (a newer minor
// version may use a larger header; 4096 is all version 1 needs).
constexpr size_t kMetaReadLimit = 65536;

ExchangeHeader ReadJobHeader(const Job& job) {
  uint64_t size = job.meta->Size();
  std::vector<uint8_t> buf(static_cast<size_t>(std::min<uint64_t>(size, kMetaReadLimit)));
  job.meta->Read(0, buf.data(), buf.size());
  try {
    return DecodeHeader(buf.data(), buf.size(), job.meta_name);
  } catch (const Error& e) {
    throw Error(e.kind(), fmt::format("script '{}' ({}): {}", job.script.Display(),
                                      job.status.Describe(), e.what()))
        .with_script(job.script.Display())
        .with_status(job.status.code, job.status.signal);
  }
}

}  // namespace

void DecodeResultTable(Result& r, const std::string& who, std::optional<uint64_t> input_size) {
  try {
    r.table = std::make_shared<const Table>(
        DecodeTable(r.data(), r.desc.nbytes, "the result of " + who, input_size));
  } catch (const Error& e) {
    throw Error(e.kind(), e.what()).with_script(r.script.Display());
  }
}

std::string TailLines(const std::string& text, size_t max_lines) {
  size_t end = text.find_last_not_of(" \n\r\t");
  if (end == std::string::npos) return "";
  size_t pos = end + 1;
  size_t lines = 0;
  while (pos > 0 && lines < max_lines) {
    size_t nl = text.rfind('\n', pos - 1);
    if (nl == std::string::npos) {
      pos = 0;
      break;
    }
    pos = nl;
    ++lines;
  }
  size_t start = pos == 0 ? 0 : pos + 1;
  return text.substr(start, end + 1 - start);
}

std::string PythonMessage(const std::string& type, const std::string& text) {
  std::string last = TailLines(text, 1);
  while (!last.empty() && last.back() == '\n') last.pop_back();
  // The traceback may spell the type with its module ("pyrmap._worker.X").
  const std::string name = type.substr(type.rfind('.') + 1);
  const size_t colon = last.find(": ");
  if (colon != std::string::npos) {
    const std::string head = last.substr(0, colon);
    if (head == name || (head.size() > name.size() && head.compare(head.size() - name.size(), name.size(), name) == 0 &&
                         head[head.size() - name.size() - 1] == '.'))
      return last.substr(colon + 2);
  }
  return last.empty() ? type : last;
}

Result JudgeOutcome(Job& job, const RunOptions& o, bool map) {
  const std::string shown = job.script.Display();
  const std::string who = fmt::format("script '{}'", shown);
  ReadScriptMessages(job);
  std::vector<std::string> warnings;
  for (const std::string& w : job.warnings) warnings.push_back(ToValidUtf8(w));
  auto fail = [&](ErrorKind kind, std::string msg) {
    Error e(kind, std::move(msg));
    e.with_script(shown).with_status(job.status.code, job.status.signal).with_warnings(warnings);
    return e;
  };
  if (job.timed_out)
    throw fail(ErrorKind::kTimeout,
               fmt::format("{} timed out after {:g} s and was killed", who, o.timeout_seconds));
  ExchangeHeader h = ReadJobHeader(job);
  const std::string stderr_tail = ToValidUtf8(TailLines(job.proc->stderr_tail(), 20));
  auto with_stderr = [&](std::string msg) {
    if (!stderr_tail.empty()) msg += "\nstderr:\n" + stderr_tail;
    return msg;
  };
  if (h.state == State::kError) {
    const std::string type = ToValidUtf8(h.error_type);
    const std::string text = ToValidUtf8(h.error_text);
    if (type == "pyrmap.NumpyMissing") throw fail(ErrorKind::kInterpreter, text);
    // SCRIPT::NAME (R: fun =) names no function of the script: a usage
    // error, said once (the traceback would only repeat it).
    if (type == "pyrmap.FunctionNotFound") throw fail(ErrorKind::kUsage, PythonMessage(type, text));
    if (type == "pyrmap.NoResult")
      throw fail(ErrorKind::kScript,
                 fmt::format("{} finished without writing a result: it must call its "
                             "@process_via_mmap function under `if __name__ == "
                             "\"__main__\":`, or name a function to call "
                             "(SCRIPT::FUNCTION)",
                             who));
    std::string last = TailLines(text, 1);
    throw fail(ErrorKind::kScript,
               fmt::format("{} raised {}\n{}", who, last.empty() ? type : last,
                           (h.error_truncated ? "[...]\n" : "") + TailLines(text, 12)))
        .with_python(type, text);
  }
  if (h.state == State::kInputReady && !BootstrapStarted(job)) {
    // The interpreter never ran our bootstrap: not a Python, a Python
    // without the pyrmap package, or one that failed at start-up.
    if (job.proc->stderr_tail().find("No module named 'pyrmap'") != std::string::npos)
      throw fail(ErrorKind::kInterpreter,
                 fmt::format("the Python interpreter '{}' cannot import the pyrmap package{}: "
                             "install it (pip install ./python) or set PYRMAP_PACKAGE_DIR",
                             o.python,
                             o.package_dir.empty() ? "" : " from '" + o.package_dir + "'"));
    throw fail(ErrorKind::kInterpreter,
               with_stderr(fmt::format("the Python interpreter '{}' {} before pyrmap's bootstrap "
                                       "started (running {}): is it a Python 3 interpreter?",
                                       o.python, job.status.Describe(), who)));
  }
  if (!job.status.ok()) {
    const char* when =
        h.state == State::kResultReady ? "after writing its result" : "without writing a result";
    throw fail(ErrorKind::kScript,
               with_stderr(fmt::format("{} {} {}", who, job.status.Describe(), when)));
  }
  if (h.state != State::kResultReady)
    throw fail(ErrorKind::kScript,
               with_stderr(fmt::format("{} finished without writing a result", who)));
  Result r;
  r.script = job.script;
  r.desc = h.result;
  r.kind = h.result_kind;
  r.warnings = warnings;
  if (h.result_location == kResultInInputSegment && !job.in_place)
    throw Error(ErrorKind::kProtocol,
                fmt::format("{} says it wrote its result into its input, which it was not "
                            "given to write",
                            who))
        .with_script(shown);
  job.result_location = h.result_location;
  const Segment& res = h.result_location == kResultInInputSegment ? *job.input : *job.res;
  try {
    CheckPayloadFits(h.result, res.Size(), res.name());
  } catch (const Error& e) {
    throw Error(e.kind(), fmt::format("{}: {}", who, e.what())).with_script(shown);
  }
  if (map && h.result.nbytes > 0) {
    r.mapping = std::make_shared<Mapping>(res.Map(o.result_map, h.result.offset, h.result.nbytes));
    if (r.kind == kKindTable) {
      const bool refs = (h.flags & kFlagInputRefs) && h.input_kind == kKindTable;
      DecodeResultTable(r, who, refs ? std::optional<uint64_t>(h.input.nbytes) : std::nullopt);
      if (RefersToInput(*r.table)) {
        if (!job.input_ro)
          throw Error(ErrorKind::kProtocol, fmt::format("{}: its result refers to an input it was not given", who));
        r.input_mapping =
            std::make_shared<Mapping>(job.input_ro->Map(o.result_map, h.input.offset, h.input.nbytes));
        r.input_offset = 0;
      }
    }
  }
  return r;
}

void JudgeEarlyExit(Job& job, const RunOptions& o) {
  JudgeOutcome(job, o, false);
  throw Error(ErrorKind::kProtocol,
              fmt::format("script '{}' wrote a result before its input was ready",
                          job.script.Display()));
}

}  // namespace pyrmap
