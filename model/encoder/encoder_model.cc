#include "model/encoder/encoder_model.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/encoder/bert.h"
#include "model/encoder/weight_loader.h"
#include "model/encoder/families/family.h"
#include "model/encoder/rotary_encoder.h"

namespace longenc::encoder {
namespace {

class BertEncoderModel final : public EncoderModel {
 public:
  BertEncoderModel(const EncoderConfig& config, torch::ScalarType dtype) : model_(config, dtype) {}
  const EncoderConfig& config() const override { return model_->config(); }
  torch::Tensor position_table() const override {
    // RoBERTa counts positions from pad_token_id + 1; the rows before are never read.
    return model_->position_table()
        .narrow(0, config().position_offset, config().usable_positions())
        .to(torch::kFloat);
  }
  torch::Tensor Forward(const torch::Tensor& input_ids, const torch::Tensor& key_valid,
                        const torch::Tensor& position_embeddings,
                        const std::vector<attention::Attention*>& cores, double query_scale) override {
    return model_->forward(input_ids, key_valid, position_embeddings, cores, query_scale);
  }
  torch::nn::Module& module() override { return *model_; }

 private:
  BertModel model_;
};

class RotaryEncoderModel final : public EncoderModel {
 public:
  RotaryEncoderModel(const EncoderConfig& config, torch::ScalarType dtype) : model_(config, dtype) {}
  const EncoderConfig& config() const override { return model_->config(); }
  torch::Tensor position_table() const override { return {}; }
  torch::Tensor Forward(const torch::Tensor& input_ids, const torch::Tensor& key_valid,
                        const torch::Tensor& /*position_embeddings*/,
                        const std::vector<attention::Attention*>& cores, double query_scale) override {
    return model_->forward(input_ids, key_valid, cores, query_scale);
  }
  torch::nn::Module& module() override { return *model_; }

 private:
  RotaryEncoder model_;
};

}  // namespace

absl::StatusOr<torch::ScalarType> ParseModelDType(const std::string& value, const torch::Device& device,
                                                  const std::string& flag) {
  if (value == "float32") return torch::kFloat;
  if (value == "bfloat16") return torch::kBFloat16;
  if (value == "float16") {
    if (device.is_cuda()) return torch::kHalf;
    return absl::InvalidArgumentError(absl::StrCat(
        flag, "=float16 needs a CUDA device (--device=cuda): CPUs have no fast float16 arithmetic; "
        "use ", flag, "=bfloat16 on CPU"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(flag, "=", value, ": expected float32, bfloat16 or float16 (CUDA only)"));
}

std::string ModelDTypeName(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kBFloat16: return "bfloat16";
    case torch::kHalf: return "float16";
    default: return "float32";
  }
}

absl::StatusOr<std::unique_ptr<EncoderModel>> LoadEncoderModel(const EncoderConfig& config,
                                                               const WeightFiles& files,
                                                               torch::ScalarType dtype) {
  const Family* family = FindFamily(config.model_type);
  if (family == nullptr) {
    return absl::InvalidArgumentError("no encoder family named '" + config.model_type + "'");
  }
  std::unique_ptr<EncoderModel> model;
  if (config.positions == PositionKind::kLearned) {
    model = std::make_unique<BertEncoderModel>(config, dtype);
  } else {
    model = std::make_unique<RotaryEncoderModel>(config, dtype);
  }
  RETURN_IF_ERROR(LoadWeightFiles(files, *family, config, model->module()));
  model->module().eval();
  return model;
}

}  // namespace longenc::encoder
