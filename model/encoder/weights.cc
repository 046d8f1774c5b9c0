#include "model/encoder/weights.h"

#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "model/encoder/weight_loader.h"

namespace longenc::encoder {
namespace {

// Tensors of a HF checkpoint that the encoder does not use.
bool IsIgnorable(const std::string& name) {
  return absl::StartsWith(name, "pooler.") || absl::EndsWith(name, "position_ids") ||
         absl::StartsWith(name, "cls.") || absl::StartsWith(name, "lm_head.");
}

std::string Shape(const std::vector<int64_t>& s) { return absl::StrCat("[", absl::StrJoin(s, ", "), "]"); }

}  // namespace

absl::Status LoadWeights(const SafetensorsFile& file, BertModel& model) {
  // Accept both "embeddings.x" and "bert.embeddings.x".
  std::string prefix;
  if (file.Find("embeddings.word_embeddings.weight") == nullptr &&
      file.Find("bert.embeddings.word_embeddings.weight") != nullptr) {
    prefix = "bert.";
  }
  std::set<std::string> used;
  std::vector<std::string> missing;
  torch::NoGradGuard no_grad;
  for (auto& item : model->named_parameters(/*recurse=*/true)) {
    const std::string name = prefix + item.key();
    const TensorView* view = file.Find(name);
    if (view == nullptr) {
      missing.push_back(name);
      continue;
    }
    used.insert(name);
    torch::Tensor& param = item.value();
    if (view->shape != param.sizes().vec()) {
      return absl::InvalidArgumentError(absl::StrCat(
          file.source(), ": tensor '", name, "' has shape ", Shape(view->shape),
          " but config.json implies ", Shape(param.sizes().vec()),
          " (config.json and model.safetensors describe different models)"));
    }
    torch::ScalarType type;
    if (!ToTorchFloat(view->dtype, &type)) {
      return absl::InvalidArgumentError(absl::StrCat(file.source(), ": tensor '", name,
                                                     "' has dtype ", DTypeName(view->dtype),
                                                     "; a floating-point type is required"));
    }
    // from_blob does not copy; copy_ converts dtype into the parameter's storage.
    torch::Tensor source = torch::from_blob(const_cast<uint8_t*>(view->data), view->shape,
                                            torch::TensorOptions().dtype(type));
    param.copy_(source);
    if (!torch::isfinite(param).all().item<bool>()) {
      return absl::InvalidArgumentError(
          absl::StrCat(file.source(), ": tensor '", name, "' holds NaN or infinite values"));
    }
  }
  if (!missing.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        file.source(), ": missing ", missing.size(), " tensor(s) the config requires, e.g. '",
        missing.front(), "'"));
  }
  for (const auto& t : file.tensors()) {
    if (!used.count(t.name) && !IsIgnorable(t.name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          file.source(), ": unexpected tensor '", t.name,
          "' that config.json does not describe (config.json and model.safetensors do not match)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace longenc::encoder
