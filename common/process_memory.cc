#include "common/process_memory.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace longenc {
namespace {

// Parses "<number> kB" (the unit /proc uses for Vm* lines) into bytes.
absl::StatusOr<int64_t> ParseKilobytes(absl::string_view value) {
  value = absl::StripAsciiWhitespace(value);
  if (!absl::ConsumeSuffix(&value, "kB")) {
    return absl::InvalidArgumentError(absl::StrCat("expected a value in kB, got '", value, "'"));
  }
  int64_t kib = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(value), &kib) || kib < 0) {
    return absl::InvalidArgumentError(absl::StrCat("not a size: '", value, "'"));
  }
  return kib * 1024;
}

}  // namespace

absl::StatusOr<ProcessMemory> ParseProcStatus(std::string_view status_text) {
  ProcessMemory memory;
  bool have_rss = false;
  bool have_hwm = false;
  // Debian's Abseil has its own string_view, hence the explicit conversion.
  const absl::string_view text(status_text.data(), status_text.size());
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(line, absl::MaxSplits(':', 1));
    if (kv.first == "VmRSS" || kv.first == "VmHWM") {
      absl::StatusOr<int64_t> bytes = ParseKilobytes(kv.second);
      if (!bytes.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(kv.first, " in /proc status: ", bytes.status().message()));
      }
      (kv.first == "VmRSS" ? memory.resident_bytes : memory.peak_resident_bytes) = *bytes;
      (kv.first == "VmRSS" ? have_rss : have_hwm) = true;
    }
  }
  if (!have_rss || !have_hwm) {
    return absl::NotFoundError("no VmRSS/VmHWM line in /proc status");
  }
  return memory;
}

absl::StatusOr<ProcessMemory> ReadProcessMemory() {
  std::ifstream file("/proc/self/status");
  if (!file) return absl::NotFoundError("cannot open /proc/self/status");
  std::stringstream text;
  text << file.rdbuf();
  return ParseProcStatus(text.str());
}

bool ResetPeakResident() {
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";
  clear.flush();
  return static_cast<bool>(clear);
}

}  // namespace longenc
