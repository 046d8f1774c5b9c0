// Resident memory of this process, from /proc/self/status (Linux). One reader for the
// server's metrics, the backend's per-batch peak, the attention benchmark and the memory-bound
// tests, so they all count the same thing.
#ifndef LONGENC_COMMON_PROCESS_MEMORY_H_
#define LONGENC_COMMON_PROCESS_MEMORY_H_

#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"

namespace longenc {

struct ProcessMemory {
  int64_t resident_bytes = 0;       // VmRSS
  int64_t peak_resident_bytes = 0;  // VmHWM: high-water mark since start or the last reset
};

// NotFound off Linux (no /proc/self/status).
absl::StatusOr<ProcessMemory> ReadProcessMemory();

// Parses the text of a /proc/<pid>/status file (exposed for tests).
absl::StatusOr<ProcessMemory> ParseProcStatus(std::string_view status_text);

// Lowers VmHWM to the current VmRSS (writes "5" to /proc/self/clear_refs), so the next read
// gives the peak of what ran in between. False where the kernel does not allow it.
bool ResetPeakResident();

}  // namespace longenc

#endif  // LONGENC_COMMON_PROCESS_MEMORY_H_
