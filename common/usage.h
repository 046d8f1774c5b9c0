// --help, --helpshort and --version for every longenc program. absl lists by default only the
// flags of a source file named like the program, which none of ours is, so --help printed
// "No flags matched"; each program names the files that define its flags instead.
#ifndef LONGENC_COMMON_USAGE_H_
#define LONGENC_COMMON_USAGE_H_

#include <string>
#include <vector>

namespace longenc {

// Call before absl::ParseCommandLine. `flag_files` are path suffixes such as
// "server/flags.cc"; --version prints "<program> <LONGENC_VERSION>".
void InstallUsage(const std::string& program, const std::string& usage,
                  std::vector<std::string> flag_files);

}  // namespace longenc

#endif  // LONGENC_COMMON_USAGE_H_
