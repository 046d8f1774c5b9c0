#include "model/encoder/weight_files.h"

#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace longenc::encoder {
namespace {

constexpr char kSingle[] = "model.safetensors";
constexpr char kIndex[] = "model.safetensors.index.json";

absl::Status Invalid(const std::string& source, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", what));
}

}  // namespace

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> WeightFiles::ParseIndex(
    const std::string& json_text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    return Invalid(source, absl::StrCat("not valid JSON (", e.what(), ")"));
  }
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object()) {
    return Invalid(source, "expected an object with a 'weight_map' object");
  }
  std::vector<std::pair<std::string, std::string>> out;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    if (!it.value().is_string()) {
      return Invalid(source, absl::StrCat("weight_map['", it.key(), "'] is not a file name"));
    }
    const std::string shard = it.value().get<std::string>();
    // Shards sit next to the index: no directories, so an index cannot point elsewhere.
    if (shard.empty() || absl::StrContains(shard, "/") || shard == "." || shard == ".." ||
        !absl::EndsWith(shard, ".safetensors")) {
      return Invalid(source, absl::StrCat("weight_map['", it.key(), "'] = '", shard,
                                          "' is not a .safetensors file name in this directory"));
    }
    out.emplace_back(it.key(), shard);
  }
  if (out.empty()) return Invalid(source, "weight_map is empty");
  return out;
}

absl::StatusOr<WeightFiles> WeightFiles::Open(const std::string& dir) {
  WeightFiles files;
  const std::string index_path = absl::StrCat(dir, "/", kIndex);
  std::ifstream index(index_path);
  if (!index) {
    files.source_ = absl::StrCat(dir, "/", kSingle);
    ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open(files.source_));
    files.shards_.push_back(std::make_unique<SafetensorsFile>(std::move(file)));
  } else {
    files.source_ = index_path;
    std::ostringstream text;
    text << index.rdbuf();
    ASSIGN_OR_RETURN(const auto pairs, ParseIndex(text.str(), index_path));
    std::map<std::string, std::string> listed(pairs.begin(), pairs.end());
    std::set<std::string> shard_names;
    for (const auto& [name, shard] : pairs) shard_names.insert(shard);
    for (const std::string& shard : shard_names) {
      ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open(absl::StrCat(dir, "/", shard)));
      for (const TensorView& t : file.tensors()) {
        auto it = listed.find(t.name);
        if (it == listed.end() || it->second != shard) {
          return Invalid(index_path, absl::StrCat("shard '", shard, "' holds tensor '", t.name,
                                                  "', which the index places ",
                                                  it == listed.end() ? "nowhere" : "in " + it->second));
        }
        listed.erase(it);
      }
      files.shards_.push_back(std::make_unique<SafetensorsFile>(std::move(file)));
    }
    if (!listed.empty()) {
      return Invalid(index_path, absl::StrCat("tensor '", listed.begin()->first, "' is listed in shard '",
                                              listed.begin()->second, "' but not stored there"));
    }
  }
  for (const auto& shard : files.shards_) {
    for (const TensorView& t : shard->tensors()) files.entries_.push_back({&t, shard.get()});
  }
  return files;
}

}  // namespace longenc::encoder
