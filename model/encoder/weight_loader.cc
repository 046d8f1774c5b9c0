#include "model/encoder/weight_loader.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"

namespace longenc::encoder {
namespace {

// Bytes copied between two releases of the mapped file.
constexpr int64_t kSliceBytes = int64_t{8} << 20;

// Tensors of published checkpoints that no encoder reads: task heads, poolers, buffers.
bool IsUnused(const std::string& name) {
  for (const char* prefix : {"pooler.", "cls.", "lm_head.", "head.", "decoder.", "classifier."}) {
    if (absl::StartsWith(name, prefix)) return true;
  }
  return absl::EndsWith(name, "position_ids") || absl::EndsWith(name, "inv_freq");
}

std::string Shape(const std::vector<int64_t>& s) { return absl::StrCat("[", absl::StrJoin(s, ", "), "]"); }

// Matches `name` against a pattern whose '*' stands for a layer index; returns the index
// ("" for patterns without '*').
std::optional<std::string> Match(const std::string& pattern, const std::string& name) {
  const size_t star = pattern.find('*');
  if (star == std::string::npos) return pattern == name ? std::optional<std::string>("") : std::nullopt;
  const std::string head = pattern.substr(0, star), tail = pattern.substr(star + 1);
  if (name.size() <= head.size() + tail.size() || !absl::StartsWith(name, head) || !absl::EndsWith(name, tail)) {
    return std::nullopt;
  }
  const std::string index = name.substr(head.size(), name.size() - head.size() - tail.size());
  if (index.size() > 4 || !std::all_of(index.begin(), index.end(), [](char ch) { return std::isdigit(ch); })) {
    return std::nullopt;
  }
  return index;
}

struct Target {
  std::string param;
  int parts = 1;
  std::vector<int> blocks = {0};
};

class Loader {
 public:
  Loader(const WeightFiles& files, const Family& family, const EncoderConfig& config,
         torch::nn::Module& module)
      : files_(files), family_(family), vocab_size_(config.vocab_size) {
    for (auto& item : module.named_parameters(/*recurse=*/true)) {
      params_.emplace(item.key(), item.value());
      filled_.emplace(item.key(), std::vector<uint8_t>(item.value().size(0), 0));
    }
    if (family.weight_rules != nullptr) rules_ = family.weight_rules(config);
    for (const auto& item : module.named_modules("", /*include_self=*/false)) {
      if (dynamic_cast<const torch::nn::EmbeddingImpl*>(item.value().get()) != nullptr) {
        lookup_tables_.insert(item.key() + ".weight");
      }
    }
  }

  absl::Status Run() {
    torch::NoGradGuard no_grad;
    for (const auto& entry : files_.entries()) {
      const std::string name = StripPrefix(entry.view->name);
      std::optional<Target> target = Resolve(name);
      if (!target) {
        if (IsUnused(name)) continue;
        return Error(absl::StrCat("unexpected tensor '", entry.view->name,
                                  "' that config.json does not describe (config.json and the "
                                  "weights do not match)"));
      }
      if (auto s = Copy(entry, *target); !s.ok()) return s;
    }
    for (const auto& [param, rows] : filled_) {
      auto gap = std::find(rows.begin(), rows.end(), 0);
      if (gap == rows.end()) continue;
      return Error(absl::StrCat("missing tensor(s) for '", param, "' (rows from ", gap - rows.begin(),
                                " of ", rows.size(), ")", Hint(param),
                                "; config.json and the weights describe different models"));
    }
    return absl::OkStatus();
  }

 private:
  absl::Status Error(const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(files_.source(), ": ", what));
  }

  std::string StripPrefix(const std::string& name) const {
    for (const auto& prefix : family_.prefixes) {
      if (absl::StartsWith(name, prefix)) return name.substr(prefix.size());
    }
    return name;
  }

  std::optional<Target> Resolve(const std::string& name) const {
    if (rules_.empty()) {
      if (params_.count(name)) return Target{name};
      return std::nullopt;
    }
    for (const WeightRule& rule : rules_) {
      if (auto index = Match(rule.source, name)) {
        return Target{absl::StrReplaceAll(rule.target, {{"*", *index}}), rule.target_parts, rule.blocks};
      }
    }
    return std::nullopt;
  }

  // " (e.g. 'encoder.layers.3.attn.Wqkv.weight')": a published name that would fill `param`.
  std::string Hint(const std::string& param) const {
    for (const WeightRule& rule : rules_) {
      if (auto index = Match(rule.target, param)) {
        return absl::StrCat(", e.g. '", absl::StrReplaceAll(rule.source, {{"*", *index}}), "'");
      }
    }
    return "";
  }

  absl::Status Copy(const WeightFiles::Entry& entry, const Target& target) {
    const TensorView& view = *entry.view;
    auto it = params_.find(target.param);
    if (it == params_.end()) {
      return Error(absl::StrCat("tensor '", view.name, "' would fill '", target.param,
                                "', which the model config.json describes does not have (a bias "
                                "or layer the config leaves out?)"));
    }
    torch::Tensor& param = it->second;
    const std::vector<int64_t> shape = param.sizes().vec();
    const int64_t blocks = static_cast<int64_t>(target.blocks.size());
    // Source blocks and target parts must have one shape.
    std::vector<int64_t> expected = shape;
    bool fits = !view.shape.empty() && view.shape.size() == shape.size() &&
                shape[0] % target.parts == 0;
    if (fits) {
      expected[0] = shape[0] / target.parts * blocks;
      fits = view.shape == expected;
    }
    if (!fits) {
      return Error(absl::StrCat("tensor '", view.name, "' has shape ", Shape(view.shape),
                                " but config.json implies ", Shape(expected), " for '", target.param,
                                "' (config.json and the weights describe different models)"));
    }
    torch::ScalarType type;
    if (!ToTorchFloat(view.dtype, &type)) {
      return Error(absl::StrCat("tensor '", view.name, "' has dtype ", DTypeName(view.dtype),
                                "; a floating-point type is required"));
    }
    if (CanMap(entry, target, param, type)) return Map(entry, target.param, type, param);
    const int64_t part_rows = shape[0] / target.parts;
    const int64_t row_bytes = view.nbytes / std::max<int64_t>(view.shape[0], 1);
    const int64_t slice_rows = std::max<int64_t>(1, kSliceBytes / std::max<int64_t>(row_bytes, 1));
    std::vector<int64_t> row_shape(view.shape.begin() + 1, view.shape.end());
    std::vector<uint8_t>& filled = filled_[target.param];
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t dst_row = target.blocks[b] * part_rows;
      for (int64_t r = dst_row; r < dst_row + part_rows; ++r) {
        if (filled[r]) {
          return Error(absl::StrCat("tensor '", view.name, "' fills rows of '", target.param,
                                    "' that another tensor already filled"));
        }
        filled[r] = 1;
      }
      for (int64_t done = 0; done < part_rows; done += slice_rows) {
        const int64_t rows = std::min(slice_rows, part_rows - done);
        const uint8_t* data = view.data + (b * part_rows + done) * row_bytes;
        std::vector<int64_t> slice_shape = {rows};
        slice_shape.insert(slice_shape.end(), row_shape.begin(), row_shape.end());
        torch::Tensor source = torch::from_blob(const_cast<uint8_t*>(data), slice_shape,
                                                torch::TensorOptions().dtype(type));
        torch::Tensor dst = param.narrow(0, dst_row + done, rows);
        dst.copy_(source);
        entry.file->Release(data, rows * row_bytes);
        if (!torch::isfinite(dst).all().item<bool>()) {
          return Error(absl::StrCat("tensor '", view.name, "' holds NaN or infinite values"));
        }
      }
    }
    return absl::OkStatus();
  }

  // A lookup table (read by row: a request touches only its tokens' rows) that one mapped
  // tensor fills whole in the parameter's own dtype is pointed at the file instead of copied.
  // So is a bf16/fp16 vocabulary table under a float32 model: every reader of the table widens
  // the rows it looks up to float32 (exactly), so it may stay in the file's dtype.
  bool CanMap(const WeightFiles::Entry& entry, const Target& target, const torch::Tensor& param,
              torch::ScalarType type) const {
    const auto address = reinterpret_cast<uintptr_t>(entry.view->data);
    const bool widened_on_lookup = param.scalar_type() == torch::kFloat &&
                                   (type == torch::kBFloat16 || type == torch::kHalf) &&
                                   param.size(0) == vocab_size_;
    return entry.file->mapped() && lookup_tables_.count(target.param) > 0 && target.parts == 1 &&
           target.blocks.size() == 1 && target.blocks[0] == 0 && param.device().is_cpu() &&
           (param.scalar_type() == type || widened_on_lookup) &&
           address % static_cast<uintptr_t>(DTypeSize(entry.view->dtype)) == 0;
  }

  // Points `param` at the mapped bytes; the tensor holds the mapping alive. Each slice is
  // checked for NaN and infinity, then its pages are released: only rows that requests read
  // become resident again (as clean, shared page-cache pages).
  absl::Status Map(const WeightFiles::Entry& entry, const std::string& name, torch::ScalarType type,
                   torch::Tensor& param) {
    const TensorView& view = *entry.view;
    std::vector<uint8_t>& filled = filled_[name];
    if (std::find(filled.begin(), filled.end(), 1) != filled.end()) {
      return Error(absl::StrCat("tensor '", view.name, "' fills rows of '", name,
                                "' that another tensor already filled"));
    }
    std::fill(filled.begin(), filled.end(), 1);
    std::shared_ptr<const void> owner = entry.file->bytes_owner();
    torch::Tensor mapped = torch::from_blob(
        const_cast<uint8_t*>(view.data), view.shape, [owner](void*) {},
        torch::TensorOptions().dtype(type));
    const int64_t row_bytes = view.nbytes / std::max<int64_t>(view.shape[0], 1);
    const int64_t slice_rows = std::max<int64_t>(1, kSliceBytes / std::max<int64_t>(row_bytes, 1));
    for (int64_t done = 0; done < view.shape[0]; done += slice_rows) {
      const int64_t rows = std::min(slice_rows, view.shape[0] - done);
      const bool finite = torch::isfinite(mapped.narrow(0, done, rows)).all().item<bool>();
      entry.file->Release(view.data + done * row_bytes, rows * row_bytes);
      if (!finite) return Error(absl::StrCat("tensor '", view.name, "' holds NaN or infinite values"));
    }
    // The module's own (initialised) storage is dropped: every holder of `param` sees the map.
    param.set_data(mapped);
    return absl::OkStatus();
  }

  const WeightFiles& files_;
  const Family& family_;
  std::vector<WeightRule> rules_;
  std::set<std::string> lookup_tables_;
  int64_t vocab_size_;
  std::map<std::string, torch::Tensor> params_;
  std::map<std::string, std::vector<uint8_t>> filled_;
};

}  // namespace

bool ToTorchFloat(DType dtype, torch::ScalarType* out) {
  switch (dtype) {
    case DType::kF32: *out = torch::kFloat32; return true;
    case DType::kF16: *out = torch::kFloat16; return true;
    case DType::kBF16: *out = torch::kBFloat16; return true;
    case DType::kF64: *out = torch::kFloat64; return true;
    default: return false;
  }
}

absl::Status LoadWeightFiles(const WeightFiles& files, const Family& family,
                            const EncoderConfig& config, torch::nn::Module& module) {
  return Loader(files, family, config, module).Run();
}

}  // namespace longenc::encoder
