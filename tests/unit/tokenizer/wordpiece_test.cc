#include "model/tokenizer/wordpiece.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace longenc::tokenizer {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Offsets = std::vector<std::pair<int32_t, int32_t>>;

// A tiny uncased vocabulary: ids are the line numbers.
const std::vector<std::string> kVocab = {
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",  // 0-4
    "hello", "world", ",", "!", "un",              // 5-9
    "##aff", "##able", "una", "a", "##a",          // 10-14
    "中", "文", "e", "cafe", "—",                  // 15-19
    "ab", "[", "]", "mask", "héllo",               // 20-24
    "Hello", "##ff", "x", "##y", "中文",           // 25-29
};

// A directory of its own for each test, under gtest's temporary directory.
std::string TestDir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) / "wordpiece_test" /
                              (std::string(info->test_suite_name()) + "." + info->name());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

std::string WriteFile(const std::string& dir, const std::string& name,
                      const std::string& contents) {
  const std::string path = dir + "/" + name;
  std::ofstream(path, std::ios::binary) << contents;
  return path;
}

std::string VocabText(const std::vector<std::string>& tokens) {
  return absl::StrJoin(tokens, "\n") + "\n";
}

WordPieceTokenizer MakeTokenizer(const TokenizerOptions& options = {}) {
  const std::string path = WriteFile(TestDir(), "vocab.txt", VocabText(kVocab));
  auto tokenizer = WordPieceTokenizer::FromVocabFile(path, options);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return *std::move(tokenizer);
}

std::vector<int32_t> Ids(const WordPieceTokenizer& tokenizer, std::string_view text) {
  auto encoding = tokenizer.Encode(text);
  EXPECT_TRUE(encoding.ok()) << encoding.status();
  return encoding.ok() ? encoding->ids : std::vector<int32_t>{};
}

Offsets OffsetsOf(const WordPieceTokenizer& tokenizer, std::string_view text) {
  auto encoding = tokenizer.Encode(text);
  EXPECT_TRUE(encoding.ok()) << encoding.status();
  return encoding.ok() ? encoding->offsets : Offsets{};
}

TEST(WordPieceTokenizer, AddsClsAndSepAroundLowerCasedWordsAndPunctuation) {
  const WordPieceTokenizer tokenizer = MakeTokenizer();
  EXPECT_THAT(Ids(tokenizer, "Hello, WORLD!"), ElementsAre(2, 5, 7, 6, 8, 3));
  EXPECT_EQ(OffsetsOf(tokenizer, "Hello, WORLD!"),
            (Offsets{{0, 0}, {0, 5}, {5, 6}, {7, 12}, {12, 13}, {0, 0}}));
}

TEST(WordPieceTokenizer, EmptyAndWhitespaceOnlyTextGiveClsSep) {
  const WordPieceTokenizer tokenizer = MakeTokenizer();
  EXPECT_THAT(Ids(tokenizer, ""), ElementsAre(2, 3));
  EXPECT_THAT(Ids(tokenizer, " \t\r\n\u3000\u00a0"), ElementsAre(2, 3));
}

TEST(WordPieceTokenizer, TakesLongestMatchingPieceFirst) {
  const WordPieceTokenizer tokenizer = MakeTokenizer();
  // "una" beats "un", so the rest is "##ff" + "##able", not "##aff" + "##able".
  EXPECT_THAT(Ids(tokenizer, "unaffable"), ElementsAre(2, 12, 26, 11, 3));
  EXPECT_EQ(OffsetsOf(tokenizer, "unaffable"), (Offsets{{0, 0}, {0, 3}, {3, 5}, {5, 9}, {0, 0}}));
}

TEST(WordPieceTokenizer, UnsegmentableWordIsOneUnknown) {
  const WordPieceTokenizer tokenizer = MakeTokenizer();
  // "x" matches, "##z" does not: the whole word becomes [UNK], spanning the word.
  EXPECT_THAT(Ids(tokenizer, "hello xyz world"), ElementsAre(2, 5, 1, 6, 3));
  EXPECT_EQ(OffsetsOf(tokenizer, "hello xyz world")[2], std::make_pair(6, 9));
}

TEST(WordPieceTokenizer, WordsLongerThanHundredCharactersAreUnknown) {
  const WordPieceTokenizer tokenizer = MakeTokenizer();
  const std::vector<int32_t> hundred = Ids(tokenizer, std::string(100, 'a'));
  ASSERT_EQ(hundred.size(), 102u);
  EXPECT_EQ(hundred[1], 13);
  EXPECT_EQ(hundred[100], 14);
  EXPECT_THAT(Ids(tokenizer, std::string(101, 'a')), ElementsAre(2, 1, 3));
  // The limit counts normalised characters: stripped accents do not count.
  std::string with_marks(99, 'a');
  for (int i = 0; i < 5; ++i) with_marks += "\u0301";
  EXPECT_EQ(Ids(tokenizer, with_marks).size(), 101u);
}

TEST(WordPieceTokenizer, StripsAccentsWhenLowerCasing) {
  const WordPieceTokenizer tokenizer = MakeTokenizer();
  EXPECT_THAT(Ids(tokenizer, "CAFÉ Héllo"), ElementsAre(2, 18, 5, 3));
  // Combining marks are stripped too; the piece keeps the bytes of its base letter and mark.
  EXPECT_EQ(OffsetsOf(tokenizer, "e\u0301"), (Offsets{{0, 0}, {0, 1}, {0, 0}}));
  EXPECT_EQ(OffsetsOf(tokenizer, "\u00e9"), (Offsets{{0, 0}, {0, 2}, {0, 0}}));
}

TEST(WordPieceTokenizer, KeepsAccentsWhenToldTo) {
  TokenizerOptions options;
  options.strip_accents = false;
  const WordPieceTokenizer tokenizer = MakeTokenizer(options);
  EXPECT_THAT(Ids(tokenizer, "HÉLLO"), ElementsAre(2, 24, 3));
  EXPECT_THAT(Ids(tokenizer, "CAFÉ"), ElementsAre(2, 1, 3));
}

TEST(WordPieceTokenizer, KeepsCaseWithoutLowerCasing) {
  TokenizerOptions options;
  options.do_lower_case = false;
  const WordPieceTokenizer tokenizer = MakeTokenizer(options);
  EXPECT_THAT(Ids(tokenizer, "Hello hello HELLO"), ElementsAre(2, 25, 5, 1, 3));
}

TEST(WordPieceTokenizer, SplitsCjkIdeographsIntoWords) {
  const WordPieceTokenizer tokenizer = MakeTokenizer();
  EXPECT_THAT(Ids(tokenizer, "中文"), ElementsAre(2, 15, 16, 3));
  EXPECT_EQ(OffsetsOf(tokenizer, "中文"), (Offsets{{0, 0}, {0, 3}, {3, 6}, {0, 0}}));
  TokenizerOptions options;
  options.tokenize_chinese_chars = false;
  EXPECT_THAT(Ids(MakeTokenizer(options), "中文"), ElementsAre(2, 29, 3));
}

TEST(WordPieceTokenizer, DropsControlAndFormatCharacters) {
  const WordPieceTokenizer tokenizer = MakeTokenizer();
  EXPECT_THAT(Ids(tokenizer, std::string("a\0b", 3)), ElementsAre(2, 20, 3));
  EXPECT_THAT(Ids(tokenizer, "a\x01" "b\u200b"), ElementsAre(2, 20, 3));
  EXPECT_THAT(Ids(tokenizer, "a\ufffdb\u00ad"), ElementsAre(2, 20, 3));
  // Other whitespace separates words.
  EXPECT_THAT(Ids(tokenizer, "a\u2003b"), ElementsAre(2, 13, 1, 3));
}

TEST(WordPieceTokenizer, SplitsOnUnicodePunctuation) {
  const WordPieceTokenizer tokenizer = MakeTokenizer();
  EXPECT_THAT(Ids(tokenizer, "a—a"), ElementsAre(2, 13, 19, 13, 3));
  EXPECT_EQ(OffsetsOf(tokenizer, "a—a")[2], std::make_pair(1, 4));
}

TEST(WordPieceTokenizer, MatchesSpecialTokensInRawText) {
  const WordPieceTokenizer tokenizer = MakeTokenizer();
  EXPECT_THAT(Ids(tokenizer, "hello[MASK]world"), ElementsAre(2, 5, 4, 6, 3));
  EXPECT_EQ(OffsetsOf(tokenizer, "hello[MASK]world")[2], std::make_pair(5, 11));
  // Lower case is not the special token: it is normalised like any text.
  EXPECT_THAT(Ids(tokenizer, "[mask]"), ElementsAre(2, 21, 23, 22, 3));
}

TEST(WordPieceTokenizer, RejectsInvalidUtf8WithItsByteOffset) {
  const WordPieceTokenizer tokenizer = MakeTokenizer();
  for (const std::string& bad : {std::string("abc\xff"), std::string("abc\xc3("),
                                 std::string("abc\xed\xa0\x80"), std::string("abc\xe4\xb8")}) {
    auto encoding = tokenizer.Encode(bad);
    ASSERT_FALSE(encoding.ok());
    EXPECT_EQ(encoding.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(encoding.status().message(), HasSubstr("byte offset 3"));
  }
}

TEST(WordPieceTokenizer, ExposesSpecialIdsAndVocabulary) {
  const WordPieceTokenizer tokenizer = MakeTokenizer();
  EXPECT_EQ(tokenizer.pad_id(), 0);
  EXPECT_EQ(tokenizer.unk_id(), 1);
  EXPECT_EQ(tokenizer.cls_id(), 2);
  EXPECT_EQ(tokenizer.sep_id(), 3);
  EXPECT_EQ(tokenizer.vocab_size(), static_cast<int64_t>(kVocab.size()));
  EXPECT_EQ(tokenizer.IdToToken(10), "##aff");
  EXPECT_EQ(tokenizer.IdToToken(-1), "");
  EXPECT_EQ(tokenizer.IdToToken(1000), "");
  EXPECT_EQ(tokenizer.TokenToId("##able"), 11);
  EXPECT_EQ(tokenizer.TokenToId("able"), std::nullopt);
}

TEST(WordPieceTokenizer, EncodesConcurrentlyFromManyThreads) {
  const WordPieceTokenizer tokenizer = MakeTokenizer();
  const std::string text = "Hello, world! unaffable 中文 CAFÉ ";
  const std::vector<int32_t> expected = Ids(tokenizer, text);
  std::vector<std::vector<int32_t>> results(4);
  std::vector<std::thread> threads;
  for (auto& result : results) {
    threads.emplace_back([&tokenizer, &text, &result] {
      for (int i = 0; i < 200; ++i) result = tokenizer.Encode(text)->ids;
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& result : results) EXPECT_EQ(result, expected);
}

TEST(WordPieceTokenizerVocab, MissingFileIsNotFoundNamingThePath) {
  auto tokenizer = WordPieceTokenizer::FromVocabFile(TestDir() + "/nope.txt", {});
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(tokenizer.status().message(), HasSubstr("nope.txt"));
}

TEST(WordPieceTokenizerVocab, EmptyFileIsRejected) {
  const std::string path = WriteFile(TestDir(), "vocab.txt", "");
  auto tokenizer = WordPieceTokenizer::FromVocabFile(path, {});
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tokenizer.status().message(), HasSubstr("empty"));
  EXPECT_THAT(tokenizer.status().message(), HasSubstr(path));
}

TEST(WordPieceTokenizerVocab, EachMissingSpecialTokenIsNamed) {
  for (const std::string missing : {"[CLS]", "[SEP]", "[PAD]", "[UNK]"}) {
    std::vector<std::string> tokens;
    for (const std::string& t : kVocab) {
      if (t != missing) tokens.push_back(t);
    }
    const std::string path = WriteFile(TestDir(), "vocab.txt", VocabText(tokens));
    auto tokenizer = WordPieceTokenizer::FromVocabFile(path, {});
    ASSERT_FALSE(tokenizer.ok()) << missing;
    EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(tokenizer.status().message(), HasSubstr("no \"" + missing + "\" token"));
  }
}

TEST(WordPieceTokenizerVocab, MaskIsOptional) {
  std::vector<std::string> tokens = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello"};
  const std::string path = WriteFile(TestDir(), "vocab.txt", VocabText(tokens));
  auto tokenizer = WordPieceTokenizer::FromVocabFile(path, {});
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_THAT(tokenizer->Encode("hello")->ids, ElementsAre(2, 4, 3));
}

TEST(WordPieceTokenizerVocab, DuplicateTokenNamesBothLines) {
  std::vector<std::string> tokens = kVocab;
  tokens.push_back("hello");
  const std::string path = WriteFile(TestDir(), "vocab.txt", VocabText(tokens));
  auto tokenizer = WordPieceTokenizer::FromVocabFile(path, {});
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tokenizer.status().message(),
              HasSubstr(":31: duplicate token \"hello\" (first on line 6)"));
}

TEST(WordPieceTokenizerVocab, InvalidUtf8TokenIsRejected) {
  std::vector<std::string> tokens = kVocab;
  tokens.push_back("bad\xff");
  const std::string path = WriteFile(TestDir(), "vocab.txt", VocabText(tokens));
  auto tokenizer = WordPieceTokenizer::FromVocabFile(path, {});
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_THAT(tokenizer.status().message(), HasSubstr(":31: token is not valid UTF-8"));
}

TEST(WordPieceTokenizerVocab, CrLfLineEndingsAreNotPartOfTokens) {
  const std::string path =
      WriteFile(TestDir(), "vocab.txt", absl::StrJoin(kVocab, "\r\n") + "\r\n");
  auto tokenizer = WordPieceTokenizer::FromVocabFile(path, {});
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ(tokenizer->vocab_size(), static_cast<int64_t>(kVocab.size()));
  EXPECT_THAT(tokenizer->Encode("hello")->ids, ElementsAre(2, 5, 3));
}

TEST(WordPieceTokenizerModelDir, DefaultsWithoutConfigFiles) {
  const std::string dir = TestDir();
  WriteFile(dir, "vocab.txt", VocabText(kVocab));
  auto tokenizer = WordPieceTokenizer::FromModelDir(dir);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_TRUE(tokenizer->options().do_lower_case);
  EXPECT_THAT(tokenizer->Encode("HELLO")->ids, ElementsAre(2, 5, 3));
}

TEST(WordPieceTokenizerModelDir, ReadsOptionsAndTokenNamesFromConfig) {
  const std::string dir = TestDir();
  std::vector<std::string> tokens = kVocab;
  tokens.insert(tokens.end(), {"<s>", "</s>"});
  WriteFile(dir, "vocab.txt", VocabText(tokens));
  WriteFile(dir, "tokenizer_config.json",
            R"({"do_lower_case": false, "strip_accents": null, "tokenize_chinese_chars": false,
                "cls_token": {"content": "<s>", "__type": "AddedToken"}, "sep_token": "</s>",
                "mask_token": null})");
  auto tokenizer = WordPieceTokenizer::FromModelDir(dir);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_FALSE(tokenizer->options().do_lower_case);
  EXPECT_FALSE(tokenizer->options().tokenize_chinese_chars);
  EXPECT_EQ(tokenizer->cls_id(), 30);
  EXPECT_EQ(tokenizer->sep_id(), 31);
  // Case kept, CJK not split, "[MASK]" no longer special.
  EXPECT_THAT(tokenizer->Encode("Hello 中文")->ids, ElementsAre(30, 25, 29, 31));
  EXPECT_THAT(tokenizer->Encode("[MASK]")->ids, ElementsAre(30, 21, 1, 22, 31));
}

TEST(WordPieceTokenizerModelDir, BadConfigIsRejectedNamingTheFile) {
  const std::string dir = TestDir();
  WriteFile(dir, "vocab.txt", VocabText(kVocab));
  WriteFile(dir, "tokenizer_config.json", "{not json");
  auto tokenizer = WordPieceTokenizer::FromModelDir(dir);
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tokenizer.status().message(), HasSubstr("tokenizer_config.json"));

  WriteFile(dir, "tokenizer_config.json", R"({"do_lower_case": "yes"})");
  tokenizer = WordPieceTokenizer::FromModelDir(dir);
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_THAT(tokenizer.status().message(), HasSubstr("\"do_lower_case\" must be true or false"));
}

TEST(WordPieceTokenizerModelDir, MissingVocabIsNotFound) {
  auto tokenizer = WordPieceTokenizer::FromModelDir(TestDir());
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(tokenizer.status().message(), HasSubstr("vocab.txt"));
}

}  // namespace
}  // namespace longenc::tokenizer
