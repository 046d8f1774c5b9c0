// tokenizer.json tokenizers on tiny hand-written files: each pipeline stage's ids and offsets,
// the parts HF-specific rules decide (GPT-2 split, merge order, Viterbi ties and unknowns,
// Metaspace, added tokens, templates, offset trimming), and refusals that name the key.
// Parity on real text is tests/python/test_tokenizer_json_parity.py.
#include "model/tokenizer/tokenizer_json.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/tokenizer/normalized_string.h"
#include "model/tokenizer/normalizers.h"
#include "model/tokenizer/pre_tokenizers.h"
#include "model/tokenizer/precompiled_charsmap.h"
#include "model/tokenizer/serde_float.h"
#include "model/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace longenc::tokenizer {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Offsets = std::vector<std::pair<int32_t, int32_t>>;
using nlohmann::json;

std::unique_ptr<Tokenizer> MustParse(const json& spec) {
  auto tokenizer = ParseTokenizerJson(spec.dump(), "tokenizer.json");
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? *std::move(tokenizer) : nullptr;
}

std::string ParseError(const json& spec) {
  auto tokenizer = ParseTokenizerJson(spec.dump(), "dir/tokenizer.json");
  EXPECT_FALSE(tokenizer.ok());
  return tokenizer.ok() ? "" : std::string(tokenizer.status().message());
}

json Template(const std::string& cls, int cls_id, const std::string& sep, int sep_id) {
  return {{"type", "TemplateProcessing"},
          {"single", {{{"SpecialToken", {{"id", cls}, {"type_id", 0}}}},
                      {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                      {{"SpecialToken", {{"id", sep}, {"type_id", 0}}}}}},
          {"special_tokens", {{cls, {{"id", cls}, {"ids", {cls_id}}, {"tokens", {cls}}}},
                              {sep, {{"id", sep}, {"ids", {sep_id}}, {"tokens", {sep}}}}}}};
}

json Added(int id, const std::string& content, bool lstrip = false) {
  return {{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", lstrip},
          {"rstrip", false}, {"normalized", false}, {"special", true}};
}

// A byte-level BPE over the letters of "hello world" (Ġ is the byte-level space).
json ByteLevelBpe() {
  json vocab = {{"[CLS]", 0}, {"[SEP]", 1}, {"h", 2},  {"e", 3},   {"l", 4},   {"o", 5},
                {"Ġ", 6},     {"w", 7},     {"r", 8},  {"d", 9},   {"he", 10}, {"ll", 11},
                {"hell", 12}, {"hello", 13}, {"Ġw", 14}, {"or", 15}, {"Ġwor", 16}, {"'", 17},
                {"s", 18},    {"'s", 19},   {"Ã", 20}, {"©", 21}, {"Ã©", 22}};
  json merges = {"h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "' s", "Ã ©"};
  return {{"version", "1.0"},
          {"added_tokens", {Added(0, "[CLS]"), Added(1, "[SEP]")}},
          {"normalizer", {{"type", "NFC"}}},
          {"pre_tokenizer",
           {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
          {"post_processor", Template("[CLS]", 0, "[SEP]", 1)},
          {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr},
                     {"vocab", vocab}, {"merges", merges}}}};
}

// A SentencePiece-style Unigram with Metaspace, as transformers converts XLM-R (no charsmap).
json MetaspaceUnigram() {
  json vocab = json::array({{"<s>", 0.0}, {"<pad>", 0.0}, {"</s>", 0.0}, {"<unk>", 0.0},
                            {"▁", -2.0}, {"a", -3.0}, {"b", -3.0}, {"ab", -5.0},
                            {"▁ab", -4.0}, {"▁a", -3.5}, {"c", -6.0}});
  return {{"added_tokens", {Added(0, "<s>"), Added(2, "</s>"), Added(11, "<mask>", true)}},
          {"normalizer", nullptr},
          {"pre_tokenizer",
           {{"type", "Sequence"},
            {"pretokenizers", {{{"type", "WhitespaceSplit"}},
                               {{"type", "Metaspace"}, {"replacement", "▁"},
                                {"prepend_scheme", "always"}, {"split", true}}}}}},
          {"post_processor", Template("<s>", 0, "</s>", 2)},
          {"model", {{"type", "Unigram"}, {"unk_id", 3}, {"vocab", vocab},
                     {"byte_fallback", false}}}};
}

TEST(Gpt2SplitTest, FollowsThePattern) {
  const auto split = [](std::string_view text) {
    std::vector<std::string> out;
    for (const auto& [b, e] : internal::Gpt2Split(text)) out.emplace_back(text.substr(b, e - b));
    return out;
  };
  EXPECT_THAT(split("Hello world"), ElementsAre("Hello", " world"));
  EXPECT_THAT(split("a  b"), ElementsAre("a", " ", " b"));
  EXPECT_THAT(split("a \tb"), ElementsAre("a", " ", "\t", "b"));
  EXPECT_THAT(split("don't we're 'S"), ElementsAre("don", "'t", " we", "'re", " '", "S"));
  EXPECT_THAT(split("x2 42 ?! 中文"), ElementsAre("x", "2", " 42", " ?!", " 中文"));
  EXPECT_THAT(split("end  "), ElementsAre("end", "  "));
  EXPECT_THAT(split(""), ElementsAre());
}

TEST(ByteLevelTest, MapsBytesAsGpt2) {
  EXPECT_EQ(internal::ByteToChar('A'), U'A');
  EXPECT_EQ(internal::ByteToChar(' '), U'\u0120');   // Ġ
  EXPECT_EQ(internal::ByteToChar('\n'), U'\u010A');  // Ċ
  EXPECT_EQ(internal::ByteToChar(0xAD), U'\u0143');
}

TEST(NormalizedStringTest, PrependAndReplaceKeepHfAlignments) {
  internal::NormalizedString s("a b", 10);
  s.Replace({{1, 2}}, "▁");
  s.Prepend("▁");
  EXPECT_EQ(s.text(), "▁a▁b");
  // The prepended mark shares the first character's span; the replacement the space's.
  EXPECT_EQ(s.OriginalSpan(0, 3), (internal::Span{10, 11}));
  EXPECT_EQ(s.OriginalSpan(4, 7), (internal::Span{11, 12}));
  EXPECT_EQ(s.OriginalSpan(0, s.text().size()), (internal::Span{10, 13}));
}

TEST(BpeTest, MergesByRankWithOffsets) {
  auto tokenizer = MustParse(ByteLevelBpe());
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->kind(), "BPE");
  auto enc = tokenizer->Encode("hello world's");
  ASSERT_TRUE(enc.ok()) << enc.status();
  EXPECT_THAT(enc->ids, ElementsAre(0, 13, 16, 4, 9, 19, 1));
  EXPECT_EQ(enc->offsets, (Offsets{{0, 0}, {0, 5}, {5, 9}, {9, 10}, {10, 11}, {11, 13}, {0, 0}}));
  EXPECT_EQ(tokenizer->cls_id(), 0);
  EXPECT_EQ(tokenizer->sep_id(), 1);
}

TEST(BpeTest, MultiByteCharactersAndNfc) {
  auto tokenizer = MustParse(ByteLevelBpe());
  ASSERT_NE(tokenizer, nullptr);
  // "e" + combining acute is composed to é (C3 A9 -> "Ã©") by NFC; as in HF, the composed
  // character keeps the span of the starter it replaced.
  auto enc = tokenizer->Encode("e\u0301");
  ASSERT_TRUE(enc.ok());
  EXPECT_THAT(enc->ids, ElementsAre(0, 22, 1));
  EXPECT_EQ(enc->offsets, (Offsets{{0, 0}, {0, 1}, {0, 0}}));
}

TEST(BpeTest, LongWordIsFast) {
  auto tokenizer = MustParse(ByteLevelBpe());
  ASSERT_NE(tokenizer, nullptr);
  auto enc = tokenizer->Encode(std::string(200000, 'l'));
  ASSERT_TRUE(enc.ok());
  EXPECT_EQ(enc->ids.size(), 100000u + 2);
  EXPECT_EQ(enc->ids[1], 11);
}

TEST(BpeTest, RobertaTrimsOffsets) {
  json spec = ByteLevelBpe();
  spec["normalizer"] = nullptr;
  spec["pre_tokenizer"]["add_prefix_space"] = true;
  spec["post_processor"] = {{"type", "RobertaProcessing"}, {"sep", {"[SEP]", 1}},
                            {"cls", {"[CLS]", 0}}, {"trim_offsets", true},
                            {"add_prefix_space", true}};
  auto tokenizer = MustParse(spec);
  ASSERT_NE(tokenizer, nullptr);
  auto enc = tokenizer->Encode("wor  wor");
  ASSERT_TRUE(enc.ok());
  // " wor" (prefix space kept by add_prefix_space), " " (trimmed to nothing), " wor".
  EXPECT_THAT(enc->ids, ElementsAre(0, 16, 6, 16, 1));
  EXPECT_EQ(enc->offsets, (Offsets{{0, 0}, {0, 3}, {4, 4}, {5, 8}, {0, 0}}));
}

TEST(UnigramTest, ViterbiMetaspaceAndTemplate) {
  auto tokenizer = MustParse(MetaspaceUnigram());
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->kind(), "Unigram");
  auto enc = tokenizer->Encode("ab  ab");
  ASSERT_TRUE(enc.ok()) << enc.status();
  EXPECT_THAT(enc->ids, ElementsAre(0, 8, 8, 2));
  EXPECT_EQ(enc->offsets, (Offsets{{0, 0}, {0, 2}, {4, 6}, {0, 0}}));
  EXPECT_EQ(tokenizer->vocab_size(), 12);
}

TEST(UnigramTest, UnknownCharactersAreFused) {
  auto tokenizer = MustParse(MetaspaceUnigram());
  ASSERT_NE(tokenizer, nullptr);
  auto enc = tokenizer->Encode("axyzb");
  ASSERT_TRUE(enc.ok());
  EXPECT_THAT(enc->ids, ElementsAre(0, 9, 3, 6, 2));
  EXPECT_EQ(enc->offsets, (Offsets{{0, 0}, {0, 1}, {1, 4}, {4, 5}, {0, 0}}));
}

TEST(UnigramTest, AddedTokensSplitFirstWithLstrip) {
  auto tokenizer = MustParse(MetaspaceUnigram());
  ASSERT_NE(tokenizer, nullptr);
  auto enc = tokenizer->Encode("a <mask>b</s>");
  ASSERT_TRUE(enc.ok());
  // <mask> takes the space before it (lstrip); the text after it gets its own ▁.
  EXPECT_THAT(enc->ids, ElementsAre(0, 9, 11, 4, 6, 2, 2));
  EXPECT_EQ(enc->offsets,
            (Offsets{{0, 0}, {0, 1}, {1, 8}, {8, 9}, {8, 9}, {9, 13}, {0, 0}}));
}

TEST(UnigramTest, EmptyTextAndInvalidUtf8) {
  auto tokenizer = MustParse(MetaspaceUnigram());
  ASSERT_NE(tokenizer, nullptr);
  auto empty = tokenizer->Encode("");
  ASSERT_TRUE(empty.ok());
  EXPECT_THAT(empty->ids, ElementsAre(0, 2));
  auto bad = tokenizer->Encode("ab\xff");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("byte offset 2"));
}

TEST(SerdeFloatTest, ReadsAsSerdeJsonDoes) {
  EXPECT_EQ(internal::SerdeJsonF64("0.5"), 0.5);
  EXPECT_EQ(internal::SerdeJsonF64("-3"), -3.0);
  EXPECT_EQ(internal::SerdeJsonF64("1e2"), 100.0);
  // Correct rounding gives -9.764354705810547; serde_json is one unit off.
  const auto serde = internal::SerdeJsonF64("-9.764354705810547");
  ASSERT_TRUE(serde.has_value());
  EXPECT_NE(*serde, std::strtod("-9.764354705810547", nullptr));
  EXPECT_FALSE(internal::SerdeJsonF64("1.").has_value());
  EXPECT_FALSE(internal::SerdeJsonF64("abc").has_value());
}

// Written by spm_train --normalization_rule_tsv for the rules A->a, B->b, U+FF21->A,
// A+U+0301->U+00C1, U+2460->1, U+FB01->fi, U+3000->space, U+200B->nothing (the same map as
// the tokenizer_json fuzz seeds, tests/fuzz/make_seeds.py).
constexpr char kSmallCharsmap[] =
    "AAQAAAAAAQBBCQAAQhEAAAcAAICBBQAADgAAgAkAAICAEAIAiwUAAAAAAICgBQAAAwAAgIAEAgCADQAAAQAAgKx4"
    "AgCBBQAACwAAgKEFAAAFAACAFQAAABQAAACR8AIAFgAAABkAAAAYAAAAGwAAABoAAAAdAAAAHAAAAB8AAAC8sAIA"
    "IQAAACAAAAAjAAAAIgAAACUAAAAkAAAAJwAAACYAAAApAAAAKAAAACsAAAAqAAAALQAAACwAAAAvAAAALgAAADEA"
    "AAAwAAAAMwAAADIAAAA1AAAANAAAADcAAAA2AAAAOQAAADgAAAA7AAAAOgAAAD0AAAA8AAAAPwAAAD4AAABBAAAA"
    "QAAAAEMAAABCAAAARQAAAEQAAABHAAAARgAAAEkAAABIAAAASwAAAEoAAABNAAAATAAAAE8AAABOAAAAUQAAAFAA"
    "AABTAAAAUgAAAFUAAABUAAAAVwAAAFYAAABZAAAAWAAAAFsAAABaAAAAXQAAAFwAAABfAAAAXgAAAGEAAABgAAAA"
    "YwAAAGIAAABlAAAAZAAAAGcAAABmAAAAaQAAAGgAAABrAAAAagAAAG0AAABsAAAAbwAAAG4AAABxAAAAcAAAAHMA"
    "AAByAAAAdQAAAHQAAAB3AAAAdgAAAHkAAAB4AAAAewAAAHoAAAB9AAAAfAAAAH8AAAB+AAAAgQAAAIAAAACDAAAA"
    "ggAAAIUAAACEAAAAhwAAAIYAAACJAAAAiAAAAIsAAACKAAAAjQAAAIwAAACPAAAAjgAAAJEAAACQAAAAkwAAAJIA"
    "AACVAAAAlAAAAJcAAACWAAAAmQAAAJgAAACbAAAAmgAAAJ0AAACcAAAAnwAAAJ4AAAChAAAAoAAAAOKUAADjvAAA"
    "pQAAAKQAAACnAAAApgAAAKkAAACoAAAAqwAAAKoAAACtAAAArAAAAK8AAADvMAAAsQAAALAAAACzAAAAsgAAALUA"
    "AAC0AAAAtwAAALYAAAC5AAAAuAAAALsAAAC6AAAAvQAAALwAAAC/AAAAvgAAAMEAAADAAAAAwwAAAMIAAADFAAAA"
    "xAAAAMcAAADGAAAAyQAAAMgAAADLAAAAygAAAM0AAADMAAAAzwAAAMwoAQDRAAAA0AAAANMAAADSAAAA1QAAANQA"
    "AADXAAAA1gAAANkAAADYAAAA2wAAANoAAADdAAAA3AAAAN8AAADeAAAA4QAAAOAAAADjAAAA4gAAAOUAAADkAAAA"
    "5wAAAOYAAADpAAAA6AAAAOsAAADqAAAA7QAAAOwAAADvAAAA7gAAAPEAAADwAAAA8wAAAPIAAAD1AAAA9AAAAPcA"
    "AAD2AAAA+QAAAPgAAAD7AAAA+gAAAP0AAAD8AAAA/wAAAP4AAAAAIAAxAEEAYQBiAGZpAMOBAA==";

std::pair<std::string, std::vector<internal::Span>> Precompile(std::string_view text) {
  auto blob = internal::DecodeBase64(kSmallCharsmap);
  EXPECT_TRUE(blob.has_value());
  auto map = internal::PrecompiledCharsmap::Parse(blob.value_or(""));
  EXPECT_TRUE(map.ok()) << map.status();
  auto normalizer = internal::MakePrecompiled(*std::move(map));
  internal::NormalizedString s(text, 0);
  normalizer->Normalize(&s);
  std::vector<internal::Span> spans;
  for (size_t i = 0; i < s.text().size(); ++i) spans.push_back(s.OriginalSpan(i, i + 1));
  return {s.text(), spans};
}

TEST(PrecompiledCharsmapTest, NormalisesAsHfDoes) {
  // Expected texts are what `tokenizers` gives with this map.
  EXPECT_EQ(Precompile("AB").first, "ab");
  EXPECT_EQ(Precompile("\uFF21B").first, "Ab");
  EXPECT_EQ(Precompile("\u2460 a\u3000b x\u200By").first, "1 a b xy");
  // A grapheme shorter than 6 bytes is replaced whole by its shortest matching prefix: "A"
  // matches before "A\u0301", so the accent is lost (HF's "yes, this seems broken" rule).
  EXPECT_EQ(Precompile("A\u0301x").first, "ax");
  EXPECT_EQ(Precompile("\uFF21\uFF21\u0301").first, "AA");
  const auto [fi, spans] = Precompile("\uFB01!");
  EXPECT_EQ(fi, "fi!");
  EXPECT_EQ(spans, (std::vector<internal::Span>{{0, 3}, {0, 3}, {3, 4}}));
}

TEST(PrecompiledCharsmapTest, EncodeIsThreadSafe) {
  json spec = MetaspaceUnigram();
  spec["normalizer"] = {{"type", "Precompiled"}, {"precompiled_charsmap", kSmallCharsmap}};
  auto tokenizer = MustParse(spec);
  ASSERT_NE(tokenizer, nullptr);
  const std::vector<std::string> texts = {"ab AB \uFF21b", "e\u0301 \u00E9 \uFB01", "a b",
                                          std::string(1000, 'a') + " \u4E2D\u6587"};
  std::vector<Encoding> expected;
  for (const std::string& text : texts) expected.push_back(*tokenizer->Encode(text));
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 200; ++round) {
        const size_t i = static_cast<size_t>(round + t) % texts.size();
        auto enc = tokenizer->Encode(texts[i]);
        if (!enc.ok() || enc->ids != expected[i].ids || enc->offsets != expected[i].offsets) {
          ++mismatches[t];
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_THAT(mismatches, ElementsAre(0, 0, 0, 0));
}

TEST(PrecompiledCharsmapTest, RefusesBrokenBlobs) {
  EXPECT_FALSE(internal::PrecompiledCharsmap::Parse("").ok());
  EXPECT_FALSE(internal::PrecompiledCharsmap::Parse(std::string("\x08\0\0\0\0\0", 6)).ok());
  EXPECT_EQ(internal::DecodeBase64("aGVsbG8="), "hello");
  EXPECT_FALSE(internal::DecodeBase64("a$b").has_value());
}

TEST(TokenizerJsonTest, RefusesWhatItCannotHonourNamingTheKey) {
  json spec = ByteLevelBpe();
  spec["model"]["type"] = "WordLevel";
  EXPECT_THAT(ParseError(spec), HasSubstr("dir/tokenizer.json: model: type \"WordLevel\""));
  spec = ByteLevelBpe();
  spec["model"]["dropout"] = 0.1;
  EXPECT_THAT(ParseError(spec), HasSubstr("model.dropout"));
  spec = ByteLevelBpe();
  spec["model"]["merges"].push_back("q z");
  EXPECT_THAT(ParseError(spec), HasSubstr("\"q\" is not in the vocabulary"));
  spec = ByteLevelBpe();
  spec["normalizer"] = {{"type", "StripAccents"}};
  EXPECT_THAT(ParseError(spec), HasSubstr("normalizer: type \"StripAccents\" is not supported"));
  spec = ByteLevelBpe();
  spec["post_processor"]["single"].erase(1);
  EXPECT_THAT(ParseError(spec), HasSubstr("no $A"));
  spec = MetaspaceUnigram();
  spec["model"]["unk_id"] = 99;
  EXPECT_THAT(ParseError(spec), HasSubstr("unk_id 99"));
  spec = MetaspaceUnigram();
  spec["pre_tokenizer"]["pretokenizers"][1]["prepend_scheme"] = "sometimes";
  EXPECT_THAT(ParseError(spec), HasSubstr("pre_tokenizer.pretokenizers.1.prepend_scheme"));
  EXPECT_THAT(ParseError(json::array()), HasSubstr("not a JSON object"));
}

TEST(TokenizerJsonTest, WordPieceLoadsIntoTheBertTokenizer) {
  json spec = {
      {"added_tokens", {Added(0, "[PAD]"), Added(1, "[UNK]"), Added(2, "[CLS]"),
                        Added(3, "[SEP]")}},
      {"normalizer", {{"type", "BertNormalizer"}, {"clean_text", true},
                      {"handle_chinese_chars", true}, {"strip_accents", nullptr},
                      {"lowercase", true}}},
      {"pre_tokenizer", {{"type", "BertPreTokenizer"}}},
      {"post_processor", Template("[CLS]", 2, "[SEP]", 3)},
      {"model", {{"type", "WordPiece"}, {"unk_token", "[UNK]"},
                 {"continuing_subword_prefix", "##"}, {"max_input_chars_per_word", 100},
                 {"vocab", {{"[PAD]", 0}, {"[UNK]", 1}, {"[CLS]", 2}, {"[SEP]", 3},
                            {"un", 4}, {"##aff", 5}, {"##able", 6}}}}}};
  auto tokenizer = MustParse(spec);
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->kind(), "WordPiece");
  auto enc = tokenizer->Encode("UnAffable [SEP]");
  ASSERT_TRUE(enc.ok());
  EXPECT_THAT(enc->ids, ElementsAre(2, 4, 5, 6, 3, 3));
  spec["model"]["vocab"].erase("##aff");
  EXPECT_THAT(ParseError(spec), HasSubstr("no token has id 5"));
}

TEST(LoadTokenizerTest, PrefersTokenizerJsonThenVocabTxt) {
  const std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) / "tokenizer_json_test_load";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "vocab.txt") << "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n";
  auto from_vocab = LoadTokenizer(dir.string());
  ASSERT_TRUE(from_vocab.ok()) << from_vocab.status();
  EXPECT_EQ((*from_vocab)->kind(), "WordPiece");
  std::ofstream(dir / "tokenizer.json") << MetaspaceUnigram().dump();
  auto from_json = LoadTokenizer(dir.string());
  ASSERT_TRUE(from_json.ok()) << from_json.status();
  EXPECT_EQ((*from_json)->kind(), "Unigram");
  std::ofstream(dir / "tokenizer.json") << "{";
  auto broken = LoadTokenizer(dir.string());
  ASSERT_FALSE(broken.ok());
  EXPECT_THAT(broken.status().message(), HasSubstr("tokenizer.json"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace longenc::tokenizer
