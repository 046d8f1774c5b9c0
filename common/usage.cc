#include "common/usage.h"

#include <utility>

#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace longenc {

void InstallUsage(const std::string& program, const std::string& usage,
                  std::vector<std::string> flag_files) {
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [files = std::move(flag_files)](absl::string_view file) {
    for (const std::string& suffix : files) {
      if (absl::EndsWith(file, suffix)) return true;
    }
    return false;
  };
  config.contains_helpshort_flags = config.contains_help_flags;
  config.version_string = [program] { return program + " " LONGENC_VERSION "\n"; };
  absl::SetFlagsUsageConfig(config);
  absl::SetProgramUsageMessage(usage);
}

}  // namespace longenc
