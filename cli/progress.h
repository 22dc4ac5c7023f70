// progress.h — what `-v/--progress` prints, and how sizes and times are
// shown to the user.
//
// With --progress a run prints one line on stderr when its input is read,
// when each script (or pipeline stage) starts on its input and when it
// ends, and when each result is written, with sizes and times:
//
//   pyrmap: input: data.npy: float64[1000, 3] (row-major), 23.4 KiB
//   pyrmap: [1/2] script 'scale.py': started on float64[1000, 3] (row-major), 23.4 KiB
//   pyrmap: [1/2] script 'scale.py': done in 0.12 s: float64[1000, 3] (row-major), 23.4 KiB
//   pyrmap: output: out.npy: 23.4 KiB in 0.001 s
//
// Without it nothing is printed (the lines go to stderr so that stdout
// stays the result).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "header.h"
#include "run.h"

namespace pyrmap::cli {

// "512 B", "23.4 KiB", "1.5 GiB".
std::string HumanSize(uint64_t bytes);

// "0.012 s", "1.25 s", "2m05s".
std::string HumanSeconds(double seconds);

// "float64[1000, 3] (row-major), 23.4 KiB".
std::string DescribeArray(const ArrayDesc& desc);

// The progress lines of one command; all of them do nothing when disabled.
class Progress {
 public:
  explicit Progress(bool enabled) : enabled_(enabled) {}
  bool enabled() const { return enabled_; }

  // The input has been read (a file's geometry is known before its data is
  // read: the data is read while it is written into its segment).
  void Input(const std::string& name, const ArrayDesc& desc) const;
  // RunOptions::on_event for this command (null when disabled).
  std::function<void(const RunEvent&)> Events() const;
  // A result was written to `where` ("stdout" or a path) in `seconds`.
  void Output(const std::string& where, uint64_t bytes, double seconds) const;

 private:
  bool enabled_;
};

}  // namespace pyrmap::cli
