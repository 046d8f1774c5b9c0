// The files around `longenc embed`: its input (EmbedInput, with --spans), its streamed output
// (EmbeddingWriter; chunk rows of --chunk/--spans, common/chunk_rows.h) and what --resume reads
// back (PrepareJsonlResume, PrepareNpyResume, and for chunk rows PrepareJsonlChunkResume and
// PrepareNpyChunkResume: a document cut short by a killed run is removed, so it is embedded
// again whole).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "client/embed_input.h"
#include "client/output.h"
#include "client/resume.h"
#include "common/chunk_rows.h"
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

// A document `id` with `chunks` chunks of 2 values each (chunk k = {k, k}).
longenc::v1::Embedding Doc(const std::string& id, int chunks) {
  longenc::v1::Embedding e;
  e.set_id(id);
  for (int k = 0; k < chunks; ++k) {
    longenc::v1::Chunk* c = e.add_chunks();
    c->add_values(static_cast<float>(k));
    c->add_values(static_cast<float>(k));
    c->set_token_start(1 + 4 * k);
    c->set_token_end(5 + 4 * k);
    c->set_char_start(10 * k);
    c->set_char_end(10 * k + 9);
  }
  return e;
}

TEST(ChunkRows, JsonlHasOneRowPerChunkAndAFailedDocumentNone) {
  std::ostringstream out;
  auto rows = NewChunkRowWriter("jsonl", &out);
  ASSERT_TRUE(rows.ok());
  auto w = NewChunkRowsWriter(std::move(*rows));
  ASSERT_TRUE(w->Write(0, Doc("a", 2)).ok());
  ASSERT_TRUE(w->Fail(1).ok());
  ASSERT_TRUE(w->Write(2, Doc("c", 1)).ok());
  ASSERT_TRUE(w->Finish().ok());
  EXPECT_EQ(out.str(),
            "{\"id\":\"a\",\"chunk\":0,\"chunks\":2,\"token_start\":1,\"token_end\":5,"
            "\"char_start\":0,\"char_end\":9,\"embedding\":[0.0,0.0]}\n"
            "{\"id\":\"a\",\"chunk\":1,\"chunks\":2,\"token_start\":5,\"token_end\":9,"
            "\"char_start\":10,\"char_end\":19,\"embedding\":[1.0,1.0]}\n"
            "{\"id\":\"c\",\"chunk\":0,\"chunks\":1,\"token_start\":1,\"token_end\":5,"
            "\"char_start\":0,\"char_end\":9,\"embedding\":[0.0,0.0]}\n");
}

TEST(ChunkRows, NpyHeaderCountsTheRowsAfterEveryDocument) {
  const std::string path = TempPath("rows.npy");
  std::fstream npy(path, std::ios::binary | std::ios::in | std::ios::out | std::ios::trunc);
  std::ofstream sidecar(ChunkRowsSidecar(path), std::ios::binary | std::ios::trunc);
  auto w = NewChunkRowsWriter(NewNpyChunkRowWriter(&npy, &sidecar, 2, 0));
  ASSERT_TRUE(w->Write(0, Doc("a", 3)).ok());
  // Not finished (a killed run): the header already says 3 rows.
  EXPECT_EQ(ReadFile(path).substr(0, kChunkNpyHeaderBytes), NpyHeader(3, 2, kChunkNpyHeaderBytes));
  ASSERT_TRUE(w->Write(1, Doc("b", 1)).ok());
  ASSERT_TRUE(w->Finish().ok());
  const std::string s = ReadFile(path);
  ASSERT_EQ(s.size(), kChunkNpyHeaderBytes + 4 * 2 * sizeof(float));
  EXPECT_EQ(s.substr(0, kChunkNpyHeaderBytes), NpyHeader(4, 2, kChunkNpyHeaderBytes));
  float v[8];
  std::memcpy(v, s.data() + kChunkNpyHeaderBytes, sizeof v);
  EXPECT_THAT(v, ElementsAre(0, 0, 1, 1, 2, 2, 0, 0));
  EXPECT_THAT(ReadFile(ChunkRowsSidecar(path)),
              HasSubstr("{\"id\":\"b\",\"chunk\":0,\"chunks\":1,\"token_start\":1,\"token_end\":5,"
                        "\"char_start\":0,\"char_end\":9,\"row\":3}\n"));
}

TEST(ChunkRowsResume, JsonlDropsTheDocumentCutShort) {
  const std::string path = TempPath("resume-rows.jsonl");
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    auto w = NewChunkRowsWriter(std::move(*NewChunkRowWriter("jsonl", &out)));
    ASSERT_TRUE(w->Write(0, Doc("a", 2)).ok());
    ASSERT_TRUE(w->Write(1, Doc("b", 3)).ok());
  }
  const std::string whole = ReadFile(path);
  const size_t a_end = whole.find("\"id\":\"b\"") - 1;  // after a's rows
  // Killed in b's second row: one row of b and part of another.
  const size_t b_second = whole.find("\"chunk\":1", a_end);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << whole.substr(0, b_second + 5);
  auto r = PrepareJsonlChunkResume(path);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->rows, 2);
  EXPECT_EQ(r->ids.size(), 1u);
  EXPECT_TRUE(r->ids.count("a"));
  EXPECT_EQ(ReadFile(path), whole.substr(0, a_end));
  EXPECT_EQ(PrepareJsonlChunkResume(TempPath("no-such-rows.jsonl"))->rows, 0);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << "{\"id\":\"a\",\"embedding\":[1]}\n";
  EXPECT_FALSE(PrepareJsonlChunkResume(path).ok());  // document lines, not chunk rows
}

TEST(ChunkRowsResume, NpyKeepsWholeDocumentsBothFilesHold) {
  const std::string path = TempPath("resume-rows.npy");
  const std::string sidecar_path = ChunkRowsSidecar(path);
  {
    std::fstream npy(path, std::ios::binary | std::ios::in | std::ios::out | std::ios::trunc);
    std::ofstream sidecar(sidecar_path, std::ios::binary | std::ios::trunc);
    auto w = NewChunkRowsWriter(NewNpyChunkRowWriter(&npy, &sidecar, 2, 0));
    ASSERT_TRUE(w->Write(0, Doc("a", 2)).ok());
    ASSERT_TRUE(w->Write(1, Doc("b", 2)).ok());
  }
  // Killed while writing b: its second row half written, the sidecar a line ahead of it.
  std::filesystem::resize_file(path, kChunkNpyHeaderBytes + 3 * 8 + 4);
  auto r = PrepareNpyChunkResume(path);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->rows, 2);
  EXPECT_EQ(r->dim, 2);
  EXPECT_TRUE(r->ids.count("a") && !r->ids.count("b"));
  EXPECT_EQ(std::filesystem::file_size(path), kChunkNpyHeaderBytes + 2 * 8);
  EXPECT_EQ(ReadFile(path).substr(0, kChunkNpyHeaderBytes), NpyHeader(2, 2, kChunkNpyHeaderBytes));
  const std::string kept = ReadFile(sidecar_path);
  EXPECT_EQ(std::count(kept.begin(), kept.end(), '\n'), 2);
  {
    std::fstream npy(path, std::ios::binary | std::ios::in | std::ios::out);
    std::ofstream sidecar(sidecar_path, std::ios::binary | std::ios::app);
    auto w = NewChunkRowsWriter(NewNpyChunkRowWriter(&npy, &sidecar, 2, r->rows));
    ASSERT_TRUE(w->Write(1, Doc("b", 2)).ok());
    ASSERT_TRUE(w->Finish().ok());
  }
  EXPECT_EQ(ReadFile(path).substr(0, kChunkNpyHeaderBytes), NpyHeader(4, 2, kChunkNpyHeaderBytes));
  EXPECT_THAT(ReadFile(sidecar_path), HasSubstr("\"row\":3}\n"));
}

TEST(EmbedInputSpans, EachLineCarriesItsSpansAndALineWithoutThemFails) {
  const std::string path = TempPath("spans.jsonl");
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      << "{\"text\": \"one two\", \"spans\": [[0, 3], [4, 7]]}\n"
      << "{\"text\": \"no spans\"}\n"
      << "{\"token_ids\": [101, 102], \"spans\": [[0, 1]]}\n"
      << "{\"text\": \"x\", \"spans\": [[0]]}\n";
  InputSpec spec;
  spec.jsonl = path;
  spec.spans = true;
  auto input = EmbedInput::Open(spec);
  ASSERT_TRUE(input.ok());
  std::vector<InputDocument> docs;
  InputDocument d;
  while ((*input)->Next(&d)) docs.push_back(d);
  ASSERT_EQ(docs.size(), 4u);
  EXPECT_TRUE(docs[0].input_error.ok());
  EXPECT_THAT(docs[0].spans, ElementsAre(std::pair<int32_t, int32_t>{0, 3},
                                         std::pair<int32_t, int32_t>{4, 7}));
  EXPECT_THAT(docs[1].input_error.message(), HasSubstr("needs \"spans\""));
  EXPECT_THAT(docs[2].input_error.message(), HasSubstr("this line has token_ids"));
  EXPECT_THAT(docs[3].input_error.message(), HasSubstr("each span is [start, end]"));
}

}  // namespace
}  // namespace longenc::client
