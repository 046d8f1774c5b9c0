#include "model/tokenizer/wordpiece.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "model/tokenizer/bert_chars.h"
#include "nlohmann/json.hpp"

namespace longenc::tokenizer {

using internal::CharFlags;

// The names of the special tokens; FromModelDir takes them from the model's config files.
struct SpecialTokenNames {
  std::string cls = "[CLS]";
  std::string sep = "[SEP]";
  std::string pad = "[PAD]";
  std::string unk = "[UNK]";
  std::string mask = "[MASK]";  // optional: empty or absent from the vocabulary is fine
  // Further special tokens (tokenizer_config.json "added_tokens_decoder").
  std::vector<std::string> extra;
};

struct WordPieceTokenizer::Data {
  TokenizerOptions options;
  bool strip_accents = true;  // options.strip_accents resolved
  std::vector<std::string> tokens;  // id -> token
  // Every token by its text, for the first piece of a word.
  absl::flat_hash_map<std::string, int32_t> word_start;
  // "##x" tokens keyed by "x", for the following pieces: no "##" concatenation per lookup.
  absl::flat_hash_map<std::string, int32_t> continuation;
  // Longest key of each map in bytes: longer candidate pieces cannot match, so are skipped.
  size_t max_word_start_bytes = 0;
  size_t max_continuation_bytes = 0;
  int32_t cls = 0, sep = 0, pad = 0, unk = 0;
  // Special token strings matched verbatim in the raw text (HF "added tokens" with
  // normalized=false), longest first so that the longest match wins.
  std::vector<std::pair<std::string, int32_t>> specials;
  std::array<bool, 256> special_first_byte{};
};

namespace {

using Data = WordPieceTokenizer::Data;

absl::StatusOr<std::string> ReadFile(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat(path, ": cannot open ", what, ": ", std::strerror(errno)));
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error on ", what));
  return contents.str();
}

bool IsValidUtf8(std::string_view s) {
  char32_t cp;
  for (size_t pos = 0; pos < s.size();) {
    const int len = internal::DecodeUtf8(s, pos, &cp);
    if (len == 0) return false;
    pos += len;
  }
  return true;
}

// vocab.txt: one token per line, the id is the 0-based line number. A final newline does not
// start another token; a trailing '\r' (CRLF files) is not part of the token.
absl::StatusOr<std::vector<std::string>> ReadVocab(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path, "vocabulary file"));
  std::vector<std::string> tokens;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + begin, end - begin);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    tokens.emplace_back(line);
    begin = end + 1;
  }
  if (tokens.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": vocabulary file is empty"));
  }
  if (tokens.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": vocabulary has too many tokens"));
  }
  return tokens;
}

// `vocab_path` names the source in messages (vocab.txt, or a tokenizer.json for FromSpec).
absl::StatusOr<std::shared_ptr<Data>> BuildData(std::vector<std::string> vocab,
                                                const std::string& vocab_path,
                                                const TokenizerOptions& options,
                                                const SpecialTokenNames& names,
                                                bool pad_required = true) {
  auto data = std::make_shared<Data>();
  data->options = options;
  data->strip_accents = options.strip_accents.value_or(options.do_lower_case);
  data->tokens = std::move(vocab);
  const auto& tokens = data->tokens;
  data->word_start.reserve(tokens.size());
  for (size_t id = 0; id < tokens.size(); ++id) {
    const std::string& token = tokens[id];
    if (!IsValidUtf8(token)) {
      return absl::InvalidArgumentError(
          absl::StrCat(vocab_path, ":", id + 1, ": token is not valid UTF-8"));
    }
    auto [it, inserted] = data->word_start.try_emplace(token, static_cast<int32_t>(id));
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat(vocab_path, ":", id + 1,
                                                     ": duplicate token \"", token,
                                                     "\" (first on line ", it->second + 1, ")"));
    }
    data->max_word_start_bytes = std::max(data->max_word_start_bytes, token.size());
    if (token.size() > 2 && token[0] == '#' && token[1] == '#') {
      data->continuation.emplace(token.substr(2), static_cast<int32_t>(id));
      data->max_continuation_bytes = std::max(data->max_continuation_bytes, token.size() - 2);
    }
  }

  const auto required = [&](const std::string& name, const char* role,
                            int32_t* id) -> absl::Status {
    auto it = data->word_start.find(name);
    if (name.empty() || it == data->word_start.end()) {
      return absl::InvalidArgumentError(absl::StrCat(vocab_path, ": vocabulary has no \"", name,
                                                     "\" token (the ", role, " token)"));
    }
    *id = it->second;
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(required(names.cls, "classification", &data->cls));
  RETURN_IF_ERROR(required(names.sep, "separator", &data->sep));
  RETURN_IF_ERROR(required(names.unk, "unknown", &data->unk));
  if (pad_required || !names.pad.empty()) {
    RETURN_IF_ERROR(required(names.pad, "padding", &data->pad));
  } else {
    data->pad = data->unk;
  }

  std::vector<std::string> special_names = {names.cls, names.sep, names.pad, names.unk,
                                            names.mask};
  special_names.insert(special_names.end(), names.extra.begin(), names.extra.end());
  for (const std::string& name : special_names) {
    auto it = data->word_start.find(name);
    // A special token missing from the vocabulary (an optional [MASK]) is not matched.
    if (name.empty() || it == data->word_start.end()) continue;
    const bool seen = std::any_of(data->specials.begin(), data->specials.end(),
                                  [&](const auto& s) { return s.first == name; });
    if (!seen) data->specials.emplace_back(name, it->second);
  }
  std::stable_sort(data->specials.begin(), data->specials.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  for (const auto& [name, id] : data->specials) {
    data->special_first_byte[static_cast<unsigned char>(name[0])] = true;
  }
  return data;
}

// One Encode() call: the streaming pipeline of BertNormalizer (clean text, isolate CJK, NFD
// and drop Mn, lower-case), BertPreTokenizer (split on whitespace and punctuation) and
// WordPiece. Every normalised character carries the byte span of the input character it came
// from, which gives the token offsets.
class EncodeRun {
 public:
  EncodeRun(const Data& data, Encoding* out)
      : data_(data), out_(out), lower_(data.options.do_lower_case),
        strip_(data.strip_accents), chinese_(data.options.tokenize_chinese_chars) {}

  absl::Status Run(std::string_view text) {
    if (text.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
      return absl::InvalidArgumentError("text is longer than 2 GiB");
    }
    // Typical English runs at ~4.5 bytes per token.
    out_->ids.reserve(text.size() / 4 + 2);
    out_->offsets.reserve(text.size() / 4 + 2);
    Emit(data_.cls, 0, 0);
    const size_t n = text.size();
    for (size_t pos = 0; pos < n;) {
      const unsigned char byte = static_cast<unsigned char>(text[pos]);
      if (data_.special_first_byte[byte]) {
        if (size_t len = MatchSpecial(text, pos); len > 0) {
          pos += len;
          continue;
        }
      }
      if (byte < 0x80) {
        AsciiChar(byte, static_cast<int32_t>(pos));
        ++pos;
        continue;
      }
      char32_t cp;
      const int len = internal::DecodeUtf8(text, pos, &cp);
      if (len == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("text is not valid UTF-8: bad byte 0x",
                         absl::Hex(byte, absl::kZeroPad2), " at byte offset ", pos));
      }
      CleanStage(cp, static_cast<int32_t>(pos), static_cast<int32_t>(pos + len));
      pos += len;
    }
    EndWord();
    Emit(data_.sep, 0, 0);
    return absl::OkStatus();
  }

 private:
  struct WordChar {
    uint32_t byte_pos;  // where the character starts in word_
    int32_t begin, end;  // its span in the input
  };
  struct Mark {
    char32_t cp;
    uint8_t combining_class;
    int32_t begin, end;
  };

  void Emit(int32_t id, int32_t begin, int32_t end) {
    out_->ids.push_back(id);
    out_->offsets.emplace_back(begin, end);
  }

  size_t MatchSpecial(std::string_view text, size_t pos) {
    for (const auto& [name, id] : data_.specials) {
      if (text.compare(pos, name.size(), name) == 0) {
        EndWord();
        Emit(id, static_cast<int32_t>(pos), static_cast<int32_t>(pos + name.size()));
        return name.size();
      }
    }
    return 0;
  }

  // The whole pipeline for one ASCII byte: no decomposition, no marks, simple case mapping.
  void AsciiChar(unsigned char c, int32_t pos) {
    const uint8_t flags = CharFlags(c);
    if (flags & internal::kDrop) return;
    if (flags & internal::kWhitespace) {
      EndWord();
    } else if (flags & internal::kPunctuation) {
      EndWord();
      AppendChar(c, pos, pos + 1);
      FlushWord();
    } else {
      FlushMarks();
      if (lower_ && c >= 'A' && c <= 'Z') c += 'a' - 'A';
      AppendChar(c, pos, pos + 1);
    }
  }

  // clean_text (drop controls, whitespace ends the word) and handle_chinese_chars.
  void CleanStage(char32_t cp, int32_t begin, int32_t end) {
    const uint8_t flags = CharFlags(cp);
    if (flags & internal::kDrop) return;
    if (flags & internal::kWhitespace) {
      EndWord();
    } else if (chinese_ && (flags & internal::kChinese)) {
      EndWord();
      AccentStage(cp, begin, end);
      EndWord();
    } else {
      AccentStage(cp, begin, end);
    }
  }

  // strip_accents: NFD (decompose, then order each run of combining marks by class), then
  // drop non-spacing marks. Marks wait in marks_ until the next starter fixes their order.
  void AccentStage(char32_t cp, int32_t begin, int32_t end) {
    if (!strip_) {
      LowerStage(cp, begin, end);
      return;
    }
    char32_t decomposed[internal::kMaxDecomposition];
    const int count = internal::Decompose(cp, decomposed);
    for (int i = 0; i < count; ++i) {
      const uint8_t ccc = internal::CombiningClass(decomposed[i]);
      if (ccc == 0) {
        FlushMarks();
        StripStage(decomposed[i], begin, end);
      } else {
        marks_.push_back({decomposed[i], ccc, begin, end});
      }
    }
  }

  void FlushMarks() {
    if (marks_.empty()) return;
    std::stable_sort(marks_.begin(), marks_.end(), [](const Mark& a, const Mark& b) {
      return a.combining_class < b.combining_class;
    });
    for (const Mark& m : marks_) StripStage(m.cp, m.begin, m.end);
    marks_.clear();
  }

  void StripStage(char32_t cp, int32_t begin, int32_t end) {
    if (CharFlags(cp) & internal::kNonSpacingMark) return;
    LowerStage(cp, begin, end);
  }

  void LowerStage(char32_t cp, int32_t begin, int32_t end) {
    if (!lower_) {
      PreTokenizeStage(cp, begin, end);
      return;
    }
    char32_t lower[2];
    const int count = internal::ToLower(cp, lower);
    for (int i = 0; i < count; ++i) PreTokenizeStage(lower[i], begin, end);
  }

  // BertPreTokenizer: whitespace separates words, each punctuation character is a word.
  void PreTokenizeStage(char32_t cp, int32_t begin, int32_t end) {
    const uint8_t flags = CharFlags(cp);
    if (flags & internal::kWhitespace) {
      FlushWord();
    } else if (flags & internal::kPunctuation) {
      FlushWord();
      AppendChar(cp, begin, end);
      FlushWord();
    } else {
      AppendChar(cp, begin, end);
    }
  }

  void AppendChar(char32_t cp, int32_t begin, int32_t end) {
    word_chars_.push_back({static_cast<uint32_t>(word_.size()), begin, end});
    internal::AppendUtf8(cp, &word_);
  }

  void EndWord() {
    FlushMarks();
    FlushWord();
  }

  size_t BytePos(size_t char_index) const {
    return char_index < word_chars_.size() ? word_chars_[char_index].byte_pos : word_.size();
  }

  // WordPiece: greedy longest match from the left; a word with a part that matches nothing,
  // or longer than kMaxInputCharsPerWord characters, is one [UNK].
  void FlushWord() {
    const size_t num_chars = word_chars_.size();
    if (num_chars == 0) return;
    const int32_t word_begin = word_chars_.front().begin;
    const int32_t word_end = word_chars_.back().end;
    const size_t first_piece = out_->ids.size();
    bool unknown = num_chars > static_cast<size_t>(WordPieceTokenizer::kMaxInputCharsPerWord);
    for (size_t start = 0; start < num_chars && !unknown;) {
      const auto& pieces = start == 0 ? data_.word_start : data_.continuation;
      const size_t max_bytes =
          start == 0 ? data_.max_word_start_bytes : data_.max_continuation_bytes;
      const size_t start_byte = BytePos(start);
      size_t end = num_chars;
      while (end > start && BytePos(end) - start_byte > max_bytes) --end;
      int32_t id = -1;
      for (; end > start; --end) {
        // absl::string_view: Debian's Abseil is built without std::string_view aliasing.
        auto it = pieces.find(absl::string_view(word_.data() + start_byte,
                                                BytePos(end) - start_byte));
        if (it != pieces.end()) {
          id = it->second;
          break;
        }
      }
      if (id < 0) {
        unknown = true;
        break;
      }
      Emit(id, word_chars_[start].begin, word_chars_[end - 1].end);
      start = end;
    }
    if (unknown) {
      out_->ids.resize(first_piece);
      out_->offsets.resize(first_piece);
      Emit(data_.unk, word_begin, word_end);
    }
    word_.clear();
    word_chars_.clear();
  }

  const Data& data_;
  Encoding* out_;
  const bool lower_, strip_, chinese_;
  std::string word_;  // the current word, normalised, UTF-8
  std::vector<WordChar> word_chars_;
  std::vector<Mark> marks_;
};

// A special-token entry of a tokenizer config: "[CLS]", {"content": "[CLS]", ...} or null.
absl::Status ReadTokenName(const nlohmann::json& config, const char* key,
                           const std::string& path, std::string* name) {
  auto it = config.find(key);
  if (it == config.end()) return absl::OkStatus();
  if (it->is_null()) {
    name->clear();
  } else if (it->is_string()) {
    *name = it->get<std::string>();
  } else if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    *name = (*it)["content"].get<std::string>();
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": \"", key, "\" must be a string or {\"content\": string}"));
  }
  return absl::OkStatus();
}

absl::StatusOr<nlohmann::json> ReadJsonObject(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path, "tokenizer config"));
  nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  }
  return json;
}

absl::Status ReadBool(const nlohmann::json& config, const char* key, const std::string& path,
                      bool* value) {
  auto it = config.find(key);
  if (it == config.end()) return absl::OkStatus();
  if (!it->is_boolean()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": \"", key, "\" must be true or false"));
  }
  *value = it->get<bool>();
  return absl::OkStatus();
}

// special_tokens_map.json and tokenizer_config.json; the latter wins where both say something.
absl::Status ReadModelDirConfig(const std::string& dir, TokenizerOptions* options,
                                SpecialTokenNames* names) {
  for (const char* file : {"special_tokens_map.json", "tokenizer_config.json"}) {
    const std::string path = absl::StrCat(dir, "/", file);
    if (!std::ifstream(path)) continue;  // both files are optional
    ASSIGN_OR_RETURN(nlohmann::json config, ReadJsonObject(path));
    RETURN_IF_ERROR(ReadBool(config, "do_lower_case", path, &options->do_lower_case));
    RETURN_IF_ERROR(
        ReadBool(config, "tokenize_chinese_chars", path, &options->tokenize_chinese_chars));
    if (auto it = config.find("strip_accents"); it != config.end()) {
      if (it->is_null()) {
        options->strip_accents.reset();
      } else if (it->is_boolean()) {
        options->strip_accents = it->get<bool>();
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": \"strip_accents\" must be true, false or null"));
      }
    }
    RETURN_IF_ERROR(ReadTokenName(config, "cls_token", path, &names->cls));
    RETURN_IF_ERROR(ReadTokenName(config, "sep_token", path, &names->sep));
    RETURN_IF_ERROR(ReadTokenName(config, "pad_token", path, &names->pad));
    RETURN_IF_ERROR(ReadTokenName(config, "unk_token", path, &names->unk));
    RETURN_IF_ERROR(ReadTokenName(config, "mask_token", path, &names->mask));
    // Newer configs list every added token; the special ones that are matched before
    // normalisation are matched verbatim in the text, as HF does.
    if (auto it = config.find("added_tokens_decoder"); it != config.end() && it->is_object()) {
      for (const auto& [id, token] : it->items()) {
        if (!token.is_object() || !token.contains("content") || !token["content"].is_string()) {
          continue;
        }
        const bool special = token.value("special", false);
        const bool normalized = token.value("normalized", !special);
        if (special && !normalized) names->extra.push_back(token["content"].get<std::string>());
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<WordPieceTokenizer> WordPieceTokenizer::FromModelDir(const std::string& dir) {
  TokenizerOptions options;
  SpecialTokenNames names;
  RETURN_IF_ERROR(ReadModelDirConfig(dir, &options, &names));
  const std::string vocab_path = absl::StrCat(dir, "/vocab.txt");
  ASSIGN_OR_RETURN(std::vector<std::string> vocab, ReadVocab(vocab_path));
  ASSIGN_OR_RETURN(std::shared_ptr<Data> data,
                   BuildData(std::move(vocab), vocab_path, options, names));
  return WordPieceTokenizer(std::move(data));
}

absl::StatusOr<WordPieceTokenizer> WordPieceTokenizer::FromVocabFile(
    const std::string& vocab_path, const TokenizerOptions& options) {
  ASSIGN_OR_RETURN(std::vector<std::string> vocab, ReadVocab(vocab_path));
  ASSIGN_OR_RETURN(std::shared_ptr<Data> data,
                   BuildData(std::move(vocab), vocab_path, options, SpecialTokenNames()));
  return WordPieceTokenizer(std::move(data));
}

absl::StatusOr<WordPieceTokenizer> WordPieceTokenizer::FromSpec(const WordPieceSpec& spec,
                                                                const std::string& source) {
  SpecialTokenNames names;
  names.cls = spec.cls;
  names.sep = spec.sep;
  names.unk = spec.unk;
  names.pad = spec.pad;
  names.mask.clear();
  names.extra = spec.specials;
  ASSIGN_OR_RETURN(std::shared_ptr<Data> data,
                   BuildData(spec.tokens, source, spec.options, names, /*pad_required=*/false));
  return WordPieceTokenizer(std::move(data));
}

absl::StatusOr<Encoding> WordPieceTokenizer::Encode(std::string_view text) const {
  Encoding encoding;
  EncodeRun run(*data_, &encoding);
  RETURN_IF_ERROR(run.Run(text));
  return encoding;
}

int32_t WordPieceTokenizer::cls_id() const { return data_->cls; }
int32_t WordPieceTokenizer::sep_id() const { return data_->sep; }
int32_t WordPieceTokenizer::pad_id() const { return data_->pad; }
int32_t WordPieceTokenizer::unk_id() const { return data_->unk; }
int64_t WordPieceTokenizer::vocab_size() const {
  return static_cast<int64_t>(data_->tokens.size());
}
const TokenizerOptions& WordPieceTokenizer::options() const { return data_->options; }

std::string_view WordPieceTokenizer::IdToToken(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= data_->tokens.size()) return {};
  return data_->tokens[id];
}

std::optional<int32_t> WordPieceTokenizer::TokenToId(std::string_view token) const {
  auto it = data_->word_start.find(absl::string_view(token.data(), token.size()));
  if (it == data_->word_start.end()) return std::nullopt;
  return it->second;
}

}  // namespace longenc::tokenizer
