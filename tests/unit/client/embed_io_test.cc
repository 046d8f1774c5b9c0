// The files around `longenc embed`: its input (EmbedInput), its streamed output
// (EmbeddingWriter) and what --resume reads back (PrepareJsonlResume, PrepareNpyResume).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "client/embed_input.h"
#include "client/output.h"
#include "client/resume.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace longenc::client {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string TempPath(const std::string& name) {
  return (std::filesystem::path(::testing::TempDir()) / name).string();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<InputDocument> All(EmbedInput& input) {
  std::vector<InputDocument> docs;
  InputDocument d;
  while (input.Next(&d)) docs.push_back(d);
  return docs;
}

TEST(EmbedInput, JsonlLinesKeepTheirLineNumbersAndBadLinesFailInPlace) {
  const std::string path = TempPath("input.jsonl");
  WriteFile(path,
            "{\"text\": \"hello world\", \"id\": \"a\"}\n"
            "\n"
            "not json\n"
            "{\"token_ids\": [101, 7592, 102]}\n"
            "{\"id\": 7}\n"
            "{\"text\": \"last\"}");
  InputSpec spec;
  spec.jsonl = path;
  auto input = EmbedInput::Open(spec);
  ASSERT_TRUE(input.ok()) << input.status();
  EXPECT_EQ((*input)->total(), 5);
  std::vector<InputDocument> docs = All(**input);
  ASSERT_EQ(docs.size(), 5u);
  EXPECT_EQ(docs[0].line, 1);
  EXPECT_EQ(docs[0].document.id(), "a");
  EXPECT_EQ(docs[0].tokens, EstimateTokens("hello world"));
  EXPECT_EQ(docs[1].line, 3);
  EXPECT_THAT(std::string(docs[1].input_error.message()), HasSubstr("not a JSON object"));
  EXPECT_EQ(docs[2].line, 4);
  EXPECT_EQ(docs[2].document.id(), "2");  // default id: the document's index
  EXPECT_EQ(docs[2].tokens, 3);
  EXPECT_TRUE(docs[2].input_error.ok());
  EXPECT_EQ(docs[3].document.id(), "7");
  EXPECT_FALSE(docs[3].input_error.ok());
  EXPECT_EQ(docs[4].line, 6);
  EXPECT_EQ(docs[4].index, 4);
  EXPECT_EQ((*input)->Where(docs[4]), path + ":6");
}

TEST(EmbedInput, SkippedDocumentsKeepTheIndicesOfTheOthers) {
  std::istringstream in("one\ntwo\nthree\n");
  InputSpec spec;
  spec.stdin_stream = &in;
  spec.need_total = true;
  auto input = EmbedInput::Open(spec);
  ASSERT_TRUE(input.ok());
  EXPECT_EQ((*input)->total(), 3);
  (*input)->SetSkip([](const InputDocument& d) { return d.document.id() == "1"; });
  std::vector<InputDocument> docs = All(**input);
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[1].index, 2);
  EXPECT_EQ(docs[1].document.text(), "three");
  EXPECT_EQ((*input)->skipped(), 1);
  EXPECT_EQ((*input)->Where(docs[1]), "stdin:3");
}

TEST(EmbedInput, ArgumentsComeFirstAndInvalidUtf8ThereIsAnError) {
  InputSpec spec;
  spec.texts = {"x", "y"};
  auto input = EmbedInput::Open(spec);
  ASSERT_TRUE(input.ok());
  EXPECT_EQ((*input)->total(), 2);
  std::vector<InputDocument> docs = All(**input);
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ((*input)->Where(docs[1]), "argument 2");
  EXPECT_FALSE((*input)->IsLine(docs[1]));
  spec.texts = {"ok", "bad\xff"};
  EXPECT_THAT(std::string(EmbedInput::Open(spec).status().message()),
              HasSubstr("argument 2 is not valid UTF-8"));
}

longenc::v1::Embedding Row(const std::string& id, float a, float b) {
  longenc::v1::Embedding e;
  e.set_id(id);
  e.add_values(a);
  e.add_values(b);
  e.set_num_tokens(3);
  return e;
}

TEST(EmbeddingWriter, JsonStreamedIsTheSameAsWrittenAtOnce) {
  std::ostringstream streamed, at_once;
  auto w = NewEmbeddingWriter("json", &streamed, 0, 0);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Write(0, Row("a", 1, 2)).ok());
  ASSERT_TRUE((*w)->Fail(1).ok());
  ASSERT_TRUE((*w)->Write(2, Row("c", 3, 4)).ok());
  ASSERT_TRUE((*w)->Finish().ok());
  ASSERT_TRUE(WriteEmbeddings({Row("a", 1, 2), Row("c", 3, 4)}, "json", at_once).ok());
  EXPECT_EQ(streamed.str(), at_once.str());
}

TEST(EmbeddingWriter, NpyRowsOfFailedAndMissingDocumentsAreNan) {
  std::ostringstream out;
  auto w = NewEmbeddingWriter("npy", &out, 4, 2);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Fail(0).ok());
  ASSERT_TRUE((*w)->Write(1, Row("b", 1, 2)).ok());
  ASSERT_TRUE((*w)->Finish().ok());
  const std::string s = out.str();
  const size_t header = NpyHeader(4, 2).size();
  EXPECT_EQ(s.substr(0, header), NpyHeader(4, 2));
  ASSERT_EQ(s.size(), header + 4 * 2 * sizeof(float));
  float v[8];
  std::memcpy(v, s.data() + header, sizeof v);
  EXPECT_TRUE(std::isnan(v[0]) && std::isnan(v[1]));
  EXPECT_EQ(v[2], 1.f);
  EXPECT_EQ(v[3], 2.f);
  for (int i = 4; i < 8; ++i) EXPECT_TRUE(std::isnan(v[i])) << i;
  EXPECT_FALSE((*w)->Write(4, Row("e", 1, 2)).ok());  // past the header's rows
  longenc::v1::Embedding wide = Row("w", 1, 2);
  wide.add_values(3);
  std::ostringstream other;
  auto w2 = NewEmbeddingWriter("npy", &other, 1, 2);
  EXPECT_THAT(std::string((*w2)->Write(0, wide).message()), HasSubstr("width 2"));
}

TEST(Resume, JsonlIdsOfCompleteLinesAndACutOffLineIsRemoved) {
  const std::string path = TempPath("resume.jsonl");
  WriteFile(path, "{\"id\":\"a\",\"embedding\":[1]}\n{\"id\":\"b\",\"embedding\":[2]}\n{\"id\":\"c\",\"emb");
  auto ids = PrepareJsonlResume(path);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(ids->size(), 2u);
  EXPECT_TRUE(ids->count("a") && ids->count("b"));
  EXPECT_EQ(ReadFile(path), "{\"id\":\"a\",\"embedding\":[1]}\n{\"id\":\"b\",\"embedding\":[2]}\n");
  EXPECT_TRUE(PrepareJsonlResume(TempPath("does-not-exist.jsonl"))->empty());
  WriteFile(path, "[1, 2]\n");
  EXPECT_FALSE(PrepareJsonlResume(path).ok());
}

TEST(Resume, NpyNanAndCutOffRowsAreMissingAndThePatcherFillsThem) {
  const std::string path = TempPath("resume.npy");
  {
    std::ofstream out(path, std::ios::binary);
    auto w = NewEmbeddingWriter("npy", &out, 4, 2);
    ASSERT_TRUE((*w)->Write(0, Row("a", 1, 2)).ok());
    ASSERT_TRUE((*w)->Fail(1).ok());
    ASSERT_TRUE((*w)->Write(2, Row("c", 5, 6)).ok());
    // Killed here: row 3 never written, and half a row of garbage after it.
    out.write("\x01\x02", 2);
  }
  auto r = PrepareNpyResume(path);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->rows, 4);
  EXPECT_EQ(r->dim, 2);
  EXPECT_THAT(r->missing, ElementsAre(false, true, false, true));
  {
    std::fstream file(path, std::ios::binary | std::ios::in | std::ios::out);
    auto patcher = NewNpyPatcher(&file, r->data_offset, r->rows, r->dim);
    ASSERT_TRUE(patcher->Write(1, Row("b", 3, 4)).ok());
    ASSERT_TRUE(patcher->Write(3, Row("d", 7, 8)).ok());
    ASSERT_TRUE(patcher->Finish().ok());
  }
  const std::string s = ReadFile(path);
  ASSERT_EQ(s.size(), r->data_offset + 8 * sizeof(float));
  float v[8];
  std::memcpy(v, s.data() + r->data_offset, sizeof v);
  EXPECT_THAT(v, ElementsAre(1, 2, 3, 4, 5, 6, 7, 8));
  auto again = PrepareNpyResume(path);
  ASSERT_TRUE(again.ok());
  EXPECT_THAT(again->missing, ElementsAre(false, false, false, false));
  WriteFile(path, "not npy");
  EXPECT_THAT(std::string(PrepareNpyResume(path).status().message()), HasSubstr("not an npy"));
}

}  // namespace
}  // namespace longenc::client
