#include "model/tokenizer/tokenizer_json.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "model/tokenizer/bpe.h"
#include "model/tokenizer/normalizers.h"
#include "model/tokenizer/pipeline_tokenizer.h"
#include "model/tokenizer/pre_tokenizers.h"
#include "model/tokenizer/precompiled_charsmap.h"
#include "model/tokenizer/serde_float.h"
#include "model/tokenizer/unigram.h"
#include "model/tokenizer/wordpiece.h"
#include "nlohmann/json.hpp"

namespace longenc::tokenizer {
namespace {

using nlohmann::json;

// Where in the file a value sits, for messages: "<path>: model.vocab".
struct Where {
  const std::string& path;
  std::string key;
  Where At(absl::string_view sub) const {
    return {path, key.empty() ? std::string(sub) : absl::StrCat(key, ".", sub)};
  }
  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", key, ": ", what));
  }
};

absl::StatusOr<const json*> Field(const json& obj, absl::string_view key, const Where& w,
                                  bool required) {
  auto it = obj.find(std::string(key));
  if (it == obj.end() || it->is_null()) {
    if (required) return w.At(key).Error("missing");
    return nullptr;
  }
  return &*it;
}

absl::StatusOr<std::string> String(const json& obj, absl::string_view key, const Where& w) {
  ASSIGN_OR_RETURN(const json* v, Field(obj, key, w, true));
  if (!v->is_string()) return w.At(key).Error("must be a string");
  return v->get<std::string>();
}

absl::StatusOr<std::optional<std::string>> OptionalString(const json& obj, absl::string_view key,
                                                          const Where& w) {
  ASSIGN_OR_RETURN(const json* v, Field(obj, key, w, false));
  if (v == nullptr) return std::optional<std::string>();
  if (!v->is_string()) return w.At(key).Error("must be a string or null");
  return std::optional<std::string>(v->get<std::string>());
}

absl::StatusOr<bool> Bool(const json& obj, absl::string_view key, const Where& w, bool fallback) {
  ASSIGN_OR_RETURN(const json* v, Field(obj, key, w, false));
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) return w.At(key).Error("must be true or false");
  return v->get<bool>();
}

absl::StatusOr<int32_t> Id(const json& v, const Where& w) {
  if (!v.is_number_integer() || v.get<int64_t>() < 0 ||
      v.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
    return w.Error("must be an id (an integer in [0, 2^31))");
  }
  return static_cast<int32_t>(v.get<int64_t>());
}

absl::StatusOr<std::string> Type(const json& obj, const Where& w) {
  if (!obj.is_object()) return w.Error("must be an object or null");
  return String(obj, "type", w);
}

absl::Status Unsupported(const Where& w, absl::string_view type) {
  return w.Error(absl::StrCat("type \"", type, "\" is not supported"));
}

// ---- added tokens -------------------------------------------------------------------------

absl::StatusOr<std::vector<AddedToken>> ReadAddedTokens(const json& root, const Where& w) {
  std::vector<AddedToken> out;
  ASSIGN_OR_RETURN(const json* list, Field(root, "added_tokens", w, false));
  if (list == nullptr) return out;
  const Where lw = w.At("added_tokens");
  if (!list->is_array()) return lw.Error("must be an array");
  for (size_t i = 0; i < list->size(); ++i) {
    const json& t = (*list)[i];
    const Where tw = lw.At(std::to_string(i));
    if (!t.is_object()) return tw.Error("must be an object");
    AddedToken token;
    ASSIGN_OR_RETURN(const json* id, Field(t, "id", tw, true));
    ASSIGN_OR_RETURN(token.id, Id(*id, tw.At("id")));
    ASSIGN_OR_RETURN(token.content, String(t, "content", tw));
    if (token.content.empty()) return tw.At("content").Error("is empty");
    ASSIGN_OR_RETURN(token.single_word, Bool(t, "single_word", tw, false));
    ASSIGN_OR_RETURN(token.lstrip, Bool(t, "lstrip", tw, false));
    ASSIGN_OR_RETURN(token.rstrip, Bool(t, "rstrip", tw, false));
    ASSIGN_OR_RETURN(token.special, Bool(t, "special", tw, false));
    ASSIGN_OR_RETURN(token.normalized, Bool(t, "normalized", tw, !token.special));
    out.push_back(std::move(token));
  }
  return out;
}

// ---- post-processor -----------------------------------------------------------------------

// BertProcessing / RobertaProcessing "cls": ["[CLS]", 101].
absl::StatusOr<int32_t> PairId(const json& obj, absl::string_view key, const Where& w) {
  ASSIGN_OR_RETURN(const json* v, Field(obj, key, w, true));
  if (!v->is_array() || v->size() != 2 || !(*v)[0].is_string()) {
    return w.At(key).Error("must be [token, id]");
  }
  return Id((*v)[1], w.At(key));
}

absl::Status ReadTemplate(const json& pp, const Where& w, PostProcessing* post) {
  ASSIGN_OR_RETURN(const json* single, Field(pp, "single", w, true));
  const Where sw = w.At("single");
  if (!single->is_array()) return sw.Error("must be an array");
  ASSIGN_OR_RETURN(const json* specials, Field(pp, "special_tokens", w, false));
  bool seen_a = false;
  for (size_t i = 0; i < single->size(); ++i) {
    const json& item = (*single)[i];
    const Where iw = sw.At(std::to_string(i));
    if (item.is_object() && item.contains("Sequence") && item["Sequence"].is_object()) {
      const json& seq = item["Sequence"];
      if (seen_a || seq.value("id", std::string()) != "A") {
        return iw.Error("the single template must hold $A exactly once (and no $B)");
      }
      seen_a = true;
      continue;
    }
    if (!item.is_object() || !item.contains("SpecialToken") ||
        !item["SpecialToken"].is_object()) {
      return iw.Error("must be {\"SpecialToken\": ...} or {\"Sequence\": ...}");
    }
    ASSIGN_OR_RETURN(const std::string name, String(item["SpecialToken"], "id", iw));
    if (specials == nullptr || !specials->is_object() || !specials->contains(name)) {
      return w.At("special_tokens").Error(absl::StrCat("has no entry \"", name, "\""));
    }
    const json& entry = (*specials)[name];
    const Where ew = w.At("special_tokens").At(name);
    if (!entry.is_object() || !entry.contains("ids") || !entry["ids"].is_array()) {
      return ew.Error("must hold \"ids\": [...]");
    }
    for (const json& id : entry["ids"]) {
      ASSIGN_OR_RETURN(const int32_t value, Id(id, ew.At("ids")));
      (seen_a ? post->suffix : post->prefix).push_back(value);
    }
  }
  if (!seen_a) return sw.Error("the single template has no $A");
  return absl::OkStatus();
}

absl::Status ReadPostProcessor(const json& pp, const Where& w, PostProcessing* post) {
  ASSIGN_OR_RETURN(const std::string type, Type(pp, w));
  if (type == "TemplateProcessing") return ReadTemplate(pp, w, post);
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    ASSIGN_OR_RETURN(const int32_t cls, PairId(pp, "cls", w));
    ASSIGN_OR_RETURN(const int32_t sep, PairId(pp, "sep", w));
    post->prefix = {cls};
    post->suffix = {sep};
    if (type == "RobertaProcessing") {
      ASSIGN_OR_RETURN(post->trim_offsets, Bool(pp, "trim_offsets", w, true));
      ASSIGN_OR_RETURN(post->trim_add_prefix_space, Bool(pp, "add_prefix_space", w, true));
    }
    return absl::OkStatus();
  }
  if (type == "ByteLevel") {
    ASSIGN_OR_RETURN(post->trim_offsets, Bool(pp, "trim_offsets", w, true));
    ASSIGN_OR_RETURN(post->trim_add_prefix_space, Bool(pp, "add_prefix_space", w, true));
    return absl::OkStatus();
  }
  if (type == "Sequence") {
    ASSIGN_OR_RETURN(const json* list, Field(pp, "processors", w, true));
    if (!list->is_array()) return w.At("processors").Error("must be an array");
    for (size_t i = 0; i < list->size(); ++i) {
      RETURN_IF_ERROR(ReadPostProcessor((*list)[i], w.At("processors").At(std::to_string(i)),
                                        post));
    }
    return absl::OkStatus();
  }
  return Unsupported(w, type);
}

// ---- normalisers and pre-tokenisers -------------------------------------------------------

absl::StatusOr<std::unique_ptr<internal::Normalizer>> ReadNormalizer(const json& n,
                                                                     const Where& w) {
  ASSIGN_OR_RETURN(const std::string type, Type(n, w));
  if (type == "NFC") return internal::MakeUnicodeNormalizer(internal::UnicodeForm::kNfc);
  if (type == "NFD") return internal::MakeUnicodeNormalizer(internal::UnicodeForm::kNfd);
  if (type == "NFKC") return internal::MakeUnicodeNormalizer(internal::UnicodeForm::kNfkc);
  if (type == "NFKD") return internal::MakeUnicodeNormalizer(internal::UnicodeForm::kNfkd);
  if (type == "Lowercase") return internal::MakeLowercase();
  if (type == "Precompiled") {
    ASSIGN_OR_RETURN(const std::string b64, String(n, "precompiled_charsmap", w));
    std::optional<std::string> blob = internal::DecodeBase64(b64);
    if (!blob) return w.At("precompiled_charsmap").Error("is not base64");
    auto map = internal::PrecompiledCharsmap::Parse(*blob);
    if (!map.ok()) return w.At("precompiled_charsmap").Error(map.status().message());
    return internal::MakePrecompiled(*std::move(map));
  }
  if (type == "Replace") {
    ASSIGN_OR_RETURN(const json* pattern, Field(n, "pattern", w, true));
    ASSIGN_OR_RETURN(const std::string content, String(n, "content", w));
    const bool is_string = pattern->is_object() && pattern->contains("String");
    const bool is_regex = pattern->is_object() && pattern->contains("Regex");
    if (is_string == is_regex) {
      return w.At("pattern").Error("must be {\"String\": ...} or {\"Regex\": ...}");
    }
    ASSIGN_OR_RETURN(const std::string text, String(*pattern, is_regex ? "Regex" : "String",
                                                    w.At("pattern")));
    auto replace = internal::MakeReplace(text, is_regex, content);
    if (!replace.ok()) return w.Error(replace.status().message());
    return replace;
  }
  if (type == "Sequence") {
    ASSIGN_OR_RETURN(const json* list, Field(n, "normalizers", w, true));
    if (!list->is_array()) return w.At("normalizers").Error("must be an array");
    std::vector<std::unique_ptr<internal::Normalizer>> parts;
    for (size_t i = 0; i < list->size(); ++i) {
      ASSIGN_OR_RETURN(auto part,
                       ReadNormalizer((*list)[i], w.At("normalizers").At(std::to_string(i))));
      parts.push_back(std::move(part));
    }
    return internal::MakeSequence(std::move(parts));
  }
  return Unsupported(w, type);
}

absl::StatusOr<std::unique_ptr<internal::PreTokenizer>> ReadPreTokenizer(const json& p,
                                                                         const Where& w) {
  ASSIGN_OR_RETURN(const std::string type, Type(p, w));
  if (type == "ByteLevel") {
    ASSIGN_OR_RETURN(const bool prefix, Bool(p, "add_prefix_space", w, true));
    ASSIGN_OR_RETURN(const bool regex, Bool(p, "use_regex", w, true));
    return internal::MakeByteLevel(prefix, regex);
  }
  if (type == "Metaspace") {
    ASSIGN_OR_RETURN(const std::string replacement, String(p, "replacement", w));
    if (replacement.empty()) return w.At("replacement").Error("is empty");
    internal::PrependScheme scheme = internal::PrependScheme::kAlways;
    ASSIGN_OR_RETURN(const std::optional<std::string> prepend,
                     OptionalString(p, "prepend_scheme", w));
    if (prepend.has_value()) {
      if (*prepend == "always") {
        scheme = internal::PrependScheme::kAlways;
      } else if (*prepend == "first") {
        scheme = internal::PrependScheme::kFirst;
      } else if (*prepend == "never") {
        scheme = internal::PrependScheme::kNever;
      } else {
        return w.At("prepend_scheme").Error("must be \"always\", \"first\" or \"never\"");
      }
    } else {
      // Files written before prepend_scheme existed say add_prefix_space.
      ASSIGN_OR_RETURN(const bool add, Bool(p, "add_prefix_space", w, true));
      scheme = add ? internal::PrependScheme::kAlways : internal::PrependScheme::kNever;
    }
    ASSIGN_OR_RETURN(const bool split, Bool(p, "split", w, true));
    return internal::MakeMetaspace(replacement, scheme, split);
  }
  if (type == "WhitespaceSplit") return internal::MakeWhitespaceSplit();
  if (type == "Sequence") {
    ASSIGN_OR_RETURN(const json* list, Field(p, "pretokenizers", w, true));
    if (!list->is_array()) return w.At("pretokenizers").Error("must be an array");
    std::vector<std::unique_ptr<internal::PreTokenizer>> parts;
    for (size_t i = 0; i < list->size(); ++i) {
      ASSIGN_OR_RETURN(auto part,
                       ReadPreTokenizer((*list)[i], w.At("pretokenizers").At(std::to_string(i))));
      parts.push_back(std::move(part));
    }
    return internal::MakeSequence(std::move(parts));
  }
  return Unsupported(w, type);
}

// ---- models -------------------------------------------------------------------------------

absl::StatusOr<std::vector<std::pair<std::string, int32_t>>> ReadVocabMap(const json& model,
                                                                          const Where& w) {
  ASSIGN_OR_RETURN(const json* vocab, Field(model, "vocab", w, true));
  if (!vocab->is_object()) return w.At("vocab").Error("must be an object {token: id}");
  std::vector<std::pair<std::string, int32_t>> out;
  out.reserve(vocab->size());
  for (const auto& [token, id] : vocab->items()) {
    ASSIGN_OR_RETURN(const int32_t value, Id(id, w.At("vocab").At(token)));
    out.emplace_back(token, value);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<internal::SubwordModel>> ReadBpe(const json& model,
                                                                const Where& w) {
  internal::BpeSpec spec;
  ASSIGN_OR_RETURN(spec.vocab, ReadVocabMap(model, w));
  ASSIGN_OR_RETURN(const json* dropout, Field(model, "dropout", w, false));
  if (dropout != nullptr && !(dropout->is_number() && dropout->get<double>() == 0.0)) {
    return w.At("dropout").Error("BPE dropout is not supported (encoding must be deterministic)");
  }
  ASSIGN_OR_RETURN(spec.unk_token, OptionalString(model, "unk_token", w));
  ASSIGN_OR_RETURN(auto prefix, OptionalString(model, "continuing_subword_prefix", w));
  ASSIGN_OR_RETURN(auto suffix, OptionalString(model, "end_of_word_suffix", w));
  spec.continuing_subword_prefix = prefix.value_or("");
  spec.end_of_word_suffix = suffix.value_or("");
  ASSIGN_OR_RETURN(spec.fuse_unk, Bool(model, "fuse_unk", w, false));
  ASSIGN_OR_RETURN(spec.byte_fallback, Bool(model, "byte_fallback", w, false));
  ASSIGN_OR_RETURN(spec.ignore_merges, Bool(model, "ignore_merges", w, false));
  ASSIGN_OR_RETURN(const json* merges, Field(model, "merges", w, false));
  if (merges != nullptr) {
    if (!merges->is_array()) return w.At("merges").Error("must be an array");
    spec.merges.reserve(merges->size());
    for (size_t i = 0; i < merges->size(); ++i) {
      const json& m = (*merges)[i];
      const Where mw = w.At("merges").At(std::to_string(i));
      if (m.is_string()) {
        std::vector<std::string> parts = absl::StrSplit(m.get<std::string>(), ' ');
        if (parts.size() != 2) return mw.Error("must be \"left right\"");
        spec.merges.emplace_back(std::move(parts[0]), std::move(parts[1]));
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        spec.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      } else {
        return mw.Error("must be \"left right\" or [left, right]");
      }
    }
  }
  auto bpe = internal::BpeModel::Create(spec);
  if (!bpe.ok()) return w.Error(bpe.status().message());
  return std::unique_ptr<internal::SubwordModel>(*std::move(bpe));
}

// `score_texts`: the scores as written in the file (serde_float.h), when they could be found.
absl::StatusOr<std::unique_ptr<internal::SubwordModel>> ReadUnigram(
    const json& model, const std::vector<std::string>& score_texts, const Where& w) {
  ASSIGN_OR_RETURN(const json* vocab, Field(model, "vocab", w, true));
  if (!vocab->is_array()) return w.At("vocab").Error("must be an array of [piece, score]");
  std::vector<std::pair<std::string, double>> pieces;
  pieces.reserve(vocab->size());
  for (size_t i = 0; i < vocab->size(); ++i) {
    const json& p = (*vocab)[i];
    if (!p.is_array() || p.size() != 2 || !p[0].is_string() || !p[1].is_number()) {
      return w.At("vocab").At(std::to_string(i)).Error("must be [piece, score]");
    }
    pieces.emplace_back(p[0].get<std::string>(), p[1].get<double>());
  }
  if (score_texts.size() == pieces.size()) {
    for (size_t i = 0; i < pieces.size(); ++i) {
      if (auto score = internal::SerdeJsonF64(score_texts[i])) pieces[i].second = *score;
    }
  }
  std::optional<int32_t> unk;
  ASSIGN_OR_RETURN(const json* unk_id, Field(model, "unk_id", w, false));
  if (unk_id != nullptr) {
    ASSIGN_OR_RETURN(unk, Id(*unk_id, w.At("unk_id")));
  }
  ASSIGN_OR_RETURN(const bool byte_fallback, Bool(model, "byte_fallback", w, false));
  auto unigram = internal::UnigramModel::Create(std::move(pieces), unk, byte_fallback);
  if (!unigram.ok()) return w.Error(unigram.status().message());
  return std::unique_ptr<internal::SubwordModel>(*std::move(unigram));
}

// ---- BERT WordPiece -----------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<Tokenizer>> ReadWordPiece(const json& root, const json& model,
                                                         std::vector<AddedToken> added,
                                                         const Where& w) {
  const Where mw = w.At("model");
  WordPieceSpec spec;
  // The BERT normaliser and pre-tokeniser are the only ones WordPieceTokenizer implements.
  ASSIGN_OR_RETURN(const json* normalizer, Field(root, "normalizer", w, true));
  ASSIGN_OR_RETURN(const std::string ntype, Type(*normalizer, w.At("normalizer")));
  if (ntype != "BertNormalizer") {
    return w.At("normalizer").Error(
        absl::StrCat("type \"", ntype, "\" with WordPiece: only BertNormalizer is supported"));
  }
  const Where nw = w.At("normalizer");
  ASSIGN_OR_RETURN(const bool clean_text, Bool(*normalizer, "clean_text", nw, true));
  if (!clean_text) return nw.At("clean_text").Error("false is not supported");
  ASSIGN_OR_RETURN(spec.options.tokenize_chinese_chars,
                   Bool(*normalizer, "handle_chinese_chars", nw, true));
  ASSIGN_OR_RETURN(spec.options.do_lower_case, Bool(*normalizer, "lowercase", nw, true));
  ASSIGN_OR_RETURN(const json* strip, Field(*normalizer, "strip_accents", nw, false));
  if (strip != nullptr) {
    if (!strip->is_boolean()) return nw.At("strip_accents").Error("must be true, false or null");
    spec.options.strip_accents = strip->get<bool>();
  }
  ASSIGN_OR_RETURN(const json* pre, Field(root, "pre_tokenizer", w, true));
  ASSIGN_OR_RETURN(const std::string ptype, Type(*pre, w.At("pre_tokenizer")));
  if (ptype != "BertPreTokenizer") {
    return w.At("pre_tokenizer").Error(absl::StrCat(
        "type \"", ptype, "\" with WordPiece: only BertPreTokenizer is supported"));
  }
  ASSIGN_OR_RETURN(spec.unk, String(model, "unk_token", mw));
  ASSIGN_OR_RETURN(auto prefix, OptionalString(model, "continuing_subword_prefix", mw));
  if (prefix.value_or("##") != "##") {
    return mw.At("continuing_subword_prefix").Error("only \"##\" is supported");
  }
  ASSIGN_OR_RETURN(const json* max_chars, Field(model, "max_input_chars_per_word", mw, false));
  if (max_chars != nullptr && (!max_chars->is_number_integer() ||
                               max_chars->get<int64_t>() != WordPieceTokenizer::kMaxInputCharsPerWord)) {
    return mw.At("max_input_chars_per_word").Error("only 100 is supported");
  }

  // Ids must be 0..n-1 across the vocabulary and the added tokens.
  ASSIGN_OR_RETURN(auto vocab, ReadVocabMap(model, mw));
  std::vector<std::optional<std::string>> by_id;
  const auto place = [&](int32_t id, const std::string& token, const Where& where) {
    if (static_cast<size_t>(id) >= by_id.size()) {
      if (static_cast<size_t>(id) > vocab.size() + added.size()) {
        return where.Error(absl::StrCat("id ", id, " leaves a gap in the ids"));
      }
      by_id.resize(static_cast<size_t>(id) + 1);
    }
    if (by_id[id].has_value() && *by_id[id] != token) {
      return where.Error(absl::StrCat("id ", id, " is both \"", *by_id[id], "\" and \"", token,
                                      "\""));
    }
    by_id[id] = token;
    return absl::OkStatus();
  };
  for (const auto& [token, id] : vocab) RETURN_IF_ERROR(place(id, token, mw.At("vocab")));
  for (const AddedToken& t : added) {
    RETURN_IF_ERROR(place(t.id, t.content, w.At("added_tokens")));
    if (t.normalized || t.lstrip || t.rstrip || t.single_word) {
      return w.At("added_tokens").Error(absl::StrCat(
          "\"", t.content, "\": with WordPiece only added tokens matched verbatim (normalized, "
          "lstrip, rstrip and single_word false) are supported"));
    }
    spec.specials.push_back(t.content);
  }
  for (size_t id = 0; id < by_id.size(); ++id) {
    if (!by_id[id].has_value()) {
      return mw.At("vocab").Error(absl::StrCat("no token has id ", id));
    }
    spec.tokens.push_back(*by_id[id]);
  }

  ASSIGN_OR_RETURN(const json* pp, Field(root, "post_processor", w, true));
  PostProcessing post;
  RETURN_IF_ERROR(ReadPostProcessor(*pp, w.At("post_processor"), &post));
  if (post.prefix.size() != 1 || post.suffix.size() != 1 || post.trim_offsets) {
    return w.At("post_processor").Error(
        "with WordPiece the template must be one special token, $A, one special token");
  }
  spec.cls = spec.tokens[post.prefix[0] < static_cast<int32_t>(spec.tokens.size())
                             ? post.prefix[0] : 0];
  spec.sep = spec.tokens[post.suffix[0] < static_cast<int32_t>(spec.tokens.size())
                             ? post.suffix[0] : 0];
  if (post.prefix[0] >= static_cast<int32_t>(spec.tokens.size()) ||
      post.suffix[0] >= static_cast<int32_t>(spec.tokens.size())) {
    return w.At("post_processor").Error("a special token id is outside the vocabulary");
  }
  ASSIGN_OR_RETURN(const json* padding, Field(root, "padding", w, false));
  if (padding != nullptr && padding->is_object() && padding->contains("pad_token") &&
      (*padding)["pad_token"].is_string()) {
    spec.pad = (*padding)["pad_token"].get<std::string>();
  } else {
    for (const std::string& t : spec.tokens) {
      if (t == "[PAD]") spec.pad = t;
    }
  }
  auto wordpiece = WordPieceTokenizer::FromSpec(spec, w.path);
  if (!wordpiece.ok()) return wordpiece.status();
  return std::unique_ptr<Tokenizer>(std::make_unique<WordPieceTokenizer>(*std::move(wordpiece)));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Parse(std::string_view text, const std::string& path) {
  const json root = json::parse(text, nullptr, /*allow_exceptions=*/false);
  const Where w{path, ""};
  if (root.is_discarded() || !root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  }
  ASSIGN_OR_RETURN(const json* model, Field(root, "model", w, true));
  ASSIGN_OR_RETURN(const std::string type, Type(*model, w.At("model")));
  ASSIGN_OR_RETURN(std::vector<AddedToken> added, ReadAddedTokens(root, w));
  // "truncation" and "padding" are ignored: documents are encoded whole and batched later.
  if (type == "WordPiece") return ReadWordPiece(root, *model, std::move(added), w);

  PipelineParts parts;
  parts.added_tokens = std::move(added);
  if (type == "BPE") {
    ASSIGN_OR_RETURN(parts.model, ReadBpe(*model, w.At("model")));
  } else if (type == "Unigram") {
    ASSIGN_OR_RETURN(parts.model,
                     ReadUnigram(*model, internal::UnigramScoreTexts(text), w.At("model")));
  } else {
    return Unsupported(w.At("model"), type);
  }
  parts.kind = type;
  ASSIGN_OR_RETURN(const json* normalizer, Field(root, "normalizer", w, false));
  if (normalizer != nullptr) {
    ASSIGN_OR_RETURN(parts.normalizer, ReadNormalizer(*normalizer, w.At("normalizer")));
  }
  ASSIGN_OR_RETURN(const json* pre, Field(root, "pre_tokenizer", w, false));
  if (pre != nullptr) {
    ASSIGN_OR_RETURN(parts.pre_tokenizer, ReadPreTokenizer(*pre, w.At("pre_tokenizer")));
  }
  ASSIGN_OR_RETURN(const json* pp, Field(root, "post_processor", w, false));
  if (pp != nullptr) RETURN_IF_ERROR(ReadPostProcessor(*pp, w.At("post_processor"), &parts.post));
  // The template's ids must be tokens the model has (the embedding table is that large).
  int64_t vocab_size = parts.model->vocab_size();
  for (const AddedToken& t : parts.added_tokens) {
    vocab_size = std::max<int64_t>(vocab_size, static_cast<int64_t>(t.id) + 1);
  }
  for (const auto* ids : {&parts.post.prefix, &parts.post.suffix}) {
    for (int32_t id : *ids) {
      if (id >= vocab_size) {
        return w.At("post_processor").Error(
            absl::StrCat("special token id ", id, " is outside the vocabulary of ", vocab_size));
      }
    }
  }
  return std::unique_ptr<Tokenizer>(std::make_unique<PipelineTokenizer>(std::move(parts)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> ParseTokenizerJson(std::string_view json_text,
                                                              const std::string& path) {
  try {
    return Parse(json_text, path);
  } catch (const nlohmann::json::exception& e) {
    // A value of an unexpected type somewhere the checks above do not look.
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", e.what()));
  }
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizerJson(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  return ParseTokenizerJson(contents.str(), path);
}

}  // namespace longenc::tokenizer
