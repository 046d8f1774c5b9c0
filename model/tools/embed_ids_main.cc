// longenc-embed-ids: encodes documents given as token ids with the LibTorch backend and prints
// one embedding per line, without a tokenizer; the parity tests compare every family with
// transformers through it. Also prints what the backend reports about the model (--info).
//
//   longenc-embed-ids --model_dir=DIR [--pooling=model|mean|cls|last] [--normalize=model|true|false]
//                     [--together] < ids.jsonl
// Input lines: {"token_ids": [...]} with an optional "pooling" (mean, cls, last) overriding
// --pooling for that line; output lines: {"embedding": [...]} in input order.
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "model/backend.h"
#include "model/backend_flags.h"
#include "model/torch_backend.h"

ABSL_FLAG(std::string, pooling, "model", "model (the directory's sentence-transformers setting), mean, cls or last");
ABSL_FLAG(std::string, normalize, "model", "model, true or false: L2-normalise the pooled vector");
ABSL_FLAG(bool, together, false, "encode every document in one batch (default: one batch each)");
ABSL_FLAG(bool, info, false, "print the model's info as JSON and exit");

namespace {

using longenc::model::Pooling;

int Fail(const std::string& message) {
  std::cerr << "longenc-embed-ids: " << message << "\n";
  return 2;
}

const char* PoolingName(Pooling p) {
  return p == Pooling::kCls ? "cls" : p == Pooling::kLastToken ? "last" : "mean";
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Encodes token-id documents read from stdin (one JSON line each).");
  absl::ParseCommandLine(argc, argv);
  const longenc::model::BackendOptions options = longenc::model::BackendOptionsFromFlags();
  auto backend = longenc::model::CreateTorchBackend(options);
  if (!backend.ok()) return Fail(std::string(backend.status().message()));
  const longenc::model::ModelInfo& info = (*backend)->info();
  if (absl::GetFlag(FLAGS_info)) {
    nlohmann::json prompts = nlohmann::json::object();
    for (const auto& [name, text] : info.prompts) prompts[name] = text;
    std::cout << nlohmann::json{{"family", info.family},
                                {"embedding_dim", info.embedding_dim},
                                {"max_positions", info.max_positions},
                                {"default_position_mode", info.default_position_mode},
                                {"pooling", PoolingName(info.default_pooling)},
                                {"normalize", info.default_normalize},
                                {"max_seq_length", info.max_seq_length},
                                {"prompts", prompts},
                                {"default_prompt_name", info.default_prompt_name}}
                     .dump()
              << "\n";
    return 0;
  }
  const absl::StatusOr<Pooling> pooling =
      longenc::model::PoolingFromFlag(absl::GetFlag(FLAGS_pooling), info);
  if (!pooling.ok()) return Fail(std::string(pooling.status().message()));
  const absl::StatusOr<bool> normalize =
      longenc::model::NormalizeFromFlag(absl::GetFlag(FLAGS_normalize), info);
  if (!normalize.ok()) return Fail(std::string(normalize.status().message()));

  std::vector<std::pair<std::vector<int32_t>, Pooling>> docs;
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    try {
      const nlohmann::json j = nlohmann::json::parse(line);
      Pooling p = *pooling;
      if (j.contains("pooling")) {
        auto line_pooling = longenc::model::PoolingFromFlag(j["pooling"].get<std::string>(), info);
        if (!line_pooling.ok()) {
          return Fail(absl::StrCat("line ", docs.size() + 1, ": pooling must be mean, cls or last"));
        }
        p = *line_pooling;
      }
      docs.emplace_back(j.at("token_ids").get<std::vector<int32_t>>(), p);
    } catch (const nlohmann::json::exception& e) {
      return Fail(absl::StrCat("line ", docs.size() + 1, ": ", e.what()));
    }
  }
  auto emit = [&](const longenc::model::Batch& batch) -> bool {
    auto result = (*backend)->Embed(batch);
    if (!result.ok()) {
      std::cerr << "longenc-embed-ids: " << result.status().message() << "\n";
      return false;
    }
    for (int64_t i = 0; i < batch.size(); ++i) {
      std::vector<float> row(result->embeddings.begin() + i * result->dim,
                             result->embeddings.begin() + (i + 1) * result->dim);
      std::cout << nlohmann::json{{"embedding", row}}.dump() << "\n";
    }
    return true;
  };
  longenc::model::Batch together;
  for (const auto& [ids, doc_pooling] : docs) {
    if (absl::GetFlag(FLAGS_together)) {
      together.Add(ids, doc_pooling, *normalize);
      continue;
    }
    longenc::model::Batch one;
    one.Add(ids, doc_pooling, *normalize);
    if (!emit(one)) return 1;
  }
  if (absl::GetFlag(FLAGS_together) && together.size() > 0 && !emit(together)) return 1;
  return 0;
}
