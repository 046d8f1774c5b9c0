// longenc-calibrate: trains CAST surrogate tokens for a pretrained encoder and writes them to
// a safetensors file that `--attention=cast --attention_options=surrogates=FILE` loads
// (calibration.h describes the method). Progress on stderr; the report as JSON on stdout.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/usage.h"
#include "model/attention/cast.h"
#include "model/backend.h"
#include "model/attention/options.h"
#include "model/calibrate/calibration.h"
#include "model/encoder/config.h"
#include "model/encoder/encoder_model.h"
#include "model/encoder/safetensors.h"
#include "model/encoder/weights.h"
#include "model/positions/positions.h"
#include "model/tokenizer/tokenizer.h"

ABSL_FLAG(std::string, input, "",
          "calibration documents, JSON Lines: {\"text\": ...} or {\"token_ids\": [101, ..., 102]} "
          "(bench/quality/calibration_docs.py writes linux-doc ones); the last "
          "--validation_documents lines are held out");
ABSL_FLAG(std::string, output, "", "safetensors file to write (tensors layer.<L>.surrogates)");
ABSL_FLAG(std::string, model_dir, "",
          "Hugging Face BERT directory; default: $LONGENC_MODEL_DIR, else the exported "
          "all-MiniLM-L6-v2");
ABSL_FLAG(std::string, attention_options, "clusters=128,kappa=32",
          "the cast options the surrogates are for: clusters (surrogates per head), kappa, "
          "assignment, mix; recorded in the file, whose loader takes them as defaults (the "
          "default is the best setting of docs/QUALITY.md §3)");
ABSL_FLAG(std::string, position_mode, "grouped,logscale",
          "position mode of the exact model run over documents longer than 512 tokens; use the "
          "one the surrogates will serve with");
ABSL_FLAG(int64_t, max_length, 4096,
          "documents are cut to this many tokens ([SEP] kept): calibration cost grows with it");
ABSL_FLAG(int64_t, steps, 10,
          "Adam steps per layer on the surrogates; 0 = k-means only (each step runs CAST forward "
          "and backward over every training document)");
ABSL_FLAG(double, learning_rate, 0.05, "Adam learning rate");
ABSL_FLAG(int64_t, kmeans_iterations, 25, "Lloyd iterations of the k-means initialisation");
ABSL_FLAG(int64_t, kmeans_samples, 8192, "keys per head sampled for the k-means");
ABSL_FLAG(int64_t, validation_documents, 1,
          "last input documents held out: their error is reported, never trained on");
ABSL_FLAG(uint64_t, seed, 0, "seed of the k-means sampling and initialisation");
ABSL_FLAG(int, threads, 0, "intra-op CPU threads; 0 = all cores");
ABSL_FLAG(std::string, dtype, "float32",
          "precision of the model whose attention inputs are recorded, as longenc-server's "
          "--dtype: float32 or bfloat16 (float16 needs CUDA; this tool runs on the CPU). Use the "
          "dtype the surrogates will serve with; they are trained in float32 either way");

namespace {

int Fail(const std::string& message) {
  std::cerr << "longenc-calibrate: " << message << "\n";
  return 2;
}

// Reads token ids (or tokenizes text) line by line; empty lines are skipped.
absl::StatusOr<std::vector<std::vector<int32_t>>> ReadDocuments(
    const std::string& path, const longenc::tokenizer::Tokenizer& tokenizer,
    int64_t max_length) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("--input=", path, ": cannot open"));
  std::vector<std::vector<int32_t>> docs;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto where = [&] { return absl::StrCat("--input=", path, " line ", number, ": "); };
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    std::vector<int32_t> ids;
    if (j.is_object() && j.contains("text") && j["text"].is_string()) {
      auto encoding = tokenizer.Encode(j["text"].get<std::string>());
      if (!encoding.ok()) return absl::InvalidArgumentError(where() + std::string(encoding.status().message()));
      ids = std::move(encoding->ids);
    } else if (j.is_object() && j.contains("token_ids") && j["token_ids"].is_array()) {
      for (const auto& v : j["token_ids"]) {
        if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= tokenizer.vocab_size()) {
          return absl::InvalidArgumentError(where() + "token ids must be integers in [0, " +
                                            std::to_string(tokenizer.vocab_size()) + ")");
        }
        ids.push_back(v.get<int32_t>());
      }
    } else {
      return absl::InvalidArgumentError(where() + "expected {\"text\": ...} or {\"token_ids\": [...]}");
    }
    if (ids.size() < 2) return absl::InvalidArgumentError(where() + "fewer than 2 tokens");
    if (static_cast<int64_t>(ids.size()) > max_length) {
      const int32_t last = ids.back();
      ids.resize(static_cast<size_t>(max_length));
      ids.back() = last;
    }
    docs.push_back(std::move(ids));
  }
  return docs;
}

}  // namespace

int main(int argc, char** argv) {
  longenc::InstallUsage(
      "longenc-calibrate",
      "Calibrates CAST surrogate tokens for a pretrained encoder: per layer and head, k-means of\n"
      "the keys on calibration documents, then Adam on the surrogates only (model weights\n"
      "frozen) to bring CAST attention close to exact attention on the inputs each layer sees\n"
      "in the exact model. Writes a safetensors file for\n"
      "  --attention=cast --attention_options=surrogates=FILE[,kappa=..,assignment=..,mix=..]\n"
      "Example:\n"
      "  .venv/bin/python bench/quality/calibration_docs.py --count 3 --length 1024 > calib.jsonl\n"
      "  longenc-calibrate --input=calib.jsonl --output=cast.safetensors",
      {"model/calibrate/calibrate_main.cc"});
  absl::ParseCommandLine(argc, argv);
  namespace attn = longenc::attention;
  namespace enc = longenc::encoder;

  const std::string input = absl::GetFlag(FLAGS_input), output = absl::GetFlag(FLAGS_output);
  if (input.empty() || output.empty()) return Fail("--input and --output are required (see --help)");
  std::string model_dir = absl::GetFlag(FLAGS_model_dir);
  if (model_dir.empty()) model_dir = longenc::model::DefaultModelDir();
  if (absl::GetFlag(FLAGS_max_length) < 2) return Fail("--max_length must be at least 2");
  if (absl::GetFlag(FLAGS_steps) < 0) return Fail("--steps must be >= 0");
  if (!(absl::GetFlag(FLAGS_learning_rate) > 0)) return Fail("--learning_rate must be > 0");
  if (absl::GetFlag(FLAGS_kmeans_iterations) < 0) return Fail("--kmeans_iterations must be >= 0");
  if (absl::GetFlag(FLAGS_kmeans_samples) < 1) return Fail("--kmeans_samples must be >= 1");
  if (absl::GetFlag(FLAGS_validation_documents) < 0) return Fail("--validation_documents must be >= 0");
  if (absl::GetFlag(FLAGS_threads) < 0) return Fail("--threads must be >= 0");

  longenc::calibrate::CalibrationOptions options;
  const std::string cast_text = absl::GetFlag(FLAGS_attention_options);
  auto cast_options = attn::ParseAttentionOptions(cast_text);
  if (!cast_options.ok()) return Fail(absl::StrCat("--attention_options: ", cast_options.status().message()));
  if (cast_options->count("surrogates")) {
    return Fail("--attention_options: surrogates= is the output here; use --output");
  }
  auto settings = attn::internal::ParseCastSettings(*cast_options);
  if (!settings.ok()) return Fail(absl::StrCat("--attention_options: ", settings.status().message()));
  options.cast = *settings;
  auto scheme = longenc::positions::ParsePositionScheme(absl::GetFlag(FLAGS_position_mode));
  if (!scheme.ok()) return Fail(absl::StrCat("--position_mode: ", scheme.status().message()));
  if (scheme->mode == longenc::positions::Mode::kChunk) {
    return Fail("--position_mode=chunk: calibrate with the one-pass mode the surrogates serve");
  }
  options.positions = *scheme;
  options.steps = absl::GetFlag(FLAGS_steps);
  options.learning_rate = absl::GetFlag(FLAGS_learning_rate);
  options.kmeans_iterations = absl::GetFlag(FLAGS_kmeans_iterations);
  options.kmeans_samples = absl::GetFlag(FLAGS_kmeans_samples);
  options.validation_documents = absl::GetFlag(FLAGS_validation_documents);
  options.seed = absl::GetFlag(FLAGS_seed);

  const int threads = absl::GetFlag(FLAGS_threads);
  at::set_num_threads(threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));

  auto tokenizer = longenc::tokenizer::LoadTokenizer(model_dir);
  if (!tokenizer.ok()) return Fail(std::string(tokenizer.status().message()));
  auto documents = ReadDocuments(input, **tokenizer, absl::GetFlag(FLAGS_max_length));
  if (!documents.ok()) return Fail(std::string(documents.status().message()));

  try {
    auto config = enc::LoadEncoderConfig(model_dir + "/config.json");
    if (!config.ok()) return Fail(std::string(config.status().message()));
    auto weights = enc::SafetensorsFile::Open(model_dir + "/model.safetensors");
    if (!weights.ok()) return Fail(std::string(weights.status().message()));
    auto dtype = enc::ParseModelDType(absl::GetFlag(FLAGS_dtype), torch::kCPU);
    if (!dtype.ok()) return Fail(std::string(dtype.status().message()));
    enc::BertModel model(*config, *dtype);
    if (absl::Status s = enc::LoadWeights(*weights, model); !s.ok()) return Fail(std::string(s.message()));
    model->eval();
    for (auto& p : model->parameters()) p.set_requires_grad(false);  // frozen

    auto result = longenc::calibrate::Calibrate(
        model, *documents, options,
        [](const std::string& line) { std::fprintf(stderr, "longenc-calibrate: %s\n", line.c_str()); });
    if (!result.ok()) return Fail(std::string(result.status().message()));

    nlohmann::ordered_json report = {
        {"output", output},
        {"attention_options", cast_text},
        {"position_mode", longenc::positions::ToString(options.positions)},
        {"documents", documents->size()},
        {"steps", options.steps},
        {"learning_rate", options.learning_rate},
        {"seed", options.seed}};
    for (const auto& r : result->reports) {
      report["layers"].push_back({{"layer", r.layer},
                                  {"train_initial", r.train_initial},
                                  {"train_final", r.train_final},
                                  {"validation_initial", r.validation_initial},
                                  {"validation_final", r.validation_final}});
    }
    const std::map<std::string, std::string> metadata = {
        {"longenc", "cast surrogates"},
        {"model", model_dir},
        {"cast_options", cast_text},
        {"calibration", report.dump()}};
    if (absl::Status s = attn::internal::SaveSurrogates(output, result->surrogates, metadata); !s.ok()) {
      return Fail(std::string(s.message()));
    }
    std::cout << report.dump(1) << "\n";
  } catch (const c10::Error& e) {
    return Fail(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return Fail(e.what());
  }
  return 0;
}
