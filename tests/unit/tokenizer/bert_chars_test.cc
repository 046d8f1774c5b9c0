#include "model/tokenizer/bert_chars.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace longenc::tokenizer::internal {
namespace {

int Decode(const std::string& s, char32_t* cp) { return DecodeUtf8(s, 0, cp); }

TEST(DecodeUtf8, AcceptsEveryLength) {
  char32_t cp = 0;
  EXPECT_EQ(Decode("a", &cp), 1);
  EXPECT_EQ(cp, U'a');
  EXPECT_EQ(Decode("\xC3\xA9", &cp), 2);
  EXPECT_EQ(cp, U'\u00E9');
  EXPECT_EQ(Decode("\xE4\xB8\xAD", &cp), 3);
  EXPECT_EQ(cp, U'\u4E2D');
  EXPECT_EQ(Decode("\xF0\x9F\x98\x80", &cp), 4);
  EXPECT_EQ(cp, U'\U0001F600');
}

TEST(DecodeUtf8, RejectsMalformedSequences) {
  char32_t cp = 0;
  EXPECT_EQ(Decode("\x80", &cp), 0);              // lone continuation byte
  EXPECT_EQ(Decode("\xC0\x80", &cp), 0);          // overlong NUL
  EXPECT_EQ(Decode("\xE0\x80\x80", &cp), 0);      // overlong 3-byte
  EXPECT_EQ(Decode("\xED\xA0\x80", &cp), 0);      // surrogate U+D800
  EXPECT_EQ(Decode("\xF4\x90\x80\x80", &cp), 0);  // above U+10FFFF
  EXPECT_EQ(Decode("\xE4\xB8", &cp), 0);          // truncated
  EXPECT_EQ(Decode("\xC3(", &cp), 0);             // bad continuation
  EXPECT_EQ(Decode("\xFF", &cp), 0);
}

TEST(AppendUtf8, RoundTripsThroughDecode) {
  for (char32_t cp : {U'a', U'\u00E9', U'\u4E2D', U'\U0001F600', U'\U0010FFFF'}) {
    std::string s;
    AppendUtf8(cp, &s);
    char32_t back = 0;
    EXPECT_EQ(Decode(s, &back), static_cast<int>(s.size()));
    EXPECT_EQ(back, cp);
  }
}

TEST(CharFlags, ClassifiesLikeBertNormalizer) {
  EXPECT_TRUE(CharFlags(0) & kDrop);
  EXPECT_TRUE(CharFlags(0xFFFD) & kDrop);
  EXPECT_TRUE(CharFlags(0x200B) & kDrop);  // ZERO WIDTH SPACE is Cf
  EXPECT_TRUE(CharFlags(0x0B) & kDrop);    // vertical tab is a control before whitespace
  EXPECT_FALSE(CharFlags('\n') & kDrop);
  EXPECT_TRUE(CharFlags('\n') & kWhitespace);
  EXPECT_TRUE(CharFlags(0x3000) & kWhitespace);
  EXPECT_TRUE(CharFlags(0x2028) & kWhitespace);
  EXPECT_TRUE(CharFlags(0x4E2D) & kChinese);
  EXPECT_FALSE(CharFlags(0x3042) & kChinese);  // hiragana is not in BERT's CJK list
  EXPECT_TRUE(CharFlags('$') & kPunctuation);  // ASCII symbols count as punctuation
  EXPECT_TRUE(CharFlags(0x2014) & kPunctuation);
  EXPECT_FALSE(CharFlags(0x00A7 + 1) & kPunctuation);  // U+00A8 DIAERESIS is Sk
  EXPECT_TRUE(CharFlags(0x0301) & kNonSpacingMark);
  EXPECT_FALSE(CharFlags(U'a') & (kDrop | kWhitespace | kChinese | kPunctuation));
}

TEST(CharFlags, UsesUnicode8CategoriesLikeTokenizers) {
  // U+0890 ARABIC POUND MARK ABOVE (Cf, Unicode 14) is unknown to HF's tables: kept.
  EXPECT_FALSE(CharFlags(0x0890) & kDrop);
  // U+2E43 (Po, Unicode 9) is not punctuation for HF.
  EXPECT_FALSE(CharFlags(0x2E43) & kPunctuation);
  // U+166D was Po in Unicode 8 (So today): HF splits on it.
  EXPECT_TRUE(CharFlags(0x166D) & kPunctuation);
}

TEST(Decompose, GivesFullCanonicalDecomposition) {
  char32_t out[kMaxDecomposition];
  ASSERT_EQ(Decompose(U'\u00E9', out), 2);
  EXPECT_EQ(out[0], U'e');
  EXPECT_EQ(out[1], U'\u0301');
  ASSERT_EQ(Decompose(U'\u1F82', out), 4);  // GREEK ALPHA WITH PSILI, VARIA, YPOGEGRAMMENI
  EXPECT_EQ(out[0], U'\u03B1');
  ASSERT_EQ(Decompose(U'\uD55C', out), 3);  // Hangul syllable -> three jamo
  EXPECT_EQ(out[0], U'\u1112');
  ASSERT_EQ(Decompose(U'x', out), 1);
  EXPECT_EQ(out[0], U'x');
}

TEST(ToLower, MapsDottedCapitalIToTwoCodePoints) {
  char32_t out[2];
  ASSERT_EQ(ToLower(U'\u0130', out), 2);
  EXPECT_EQ(out[0], U'i');
  EXPECT_EQ(out[1], U'\u0307');
  ASSERT_EQ(ToLower(U'\u03A3', out), 1);  // no final-sigma context: always small sigma
  EXPECT_EQ(out[0], U'\u03C3');
  ASSERT_EQ(ToLower(U'Q', out), 1);
  EXPECT_EQ(out[0], U'q');
}

TEST(CombiningClass, IsZeroForStartersAndPositiveForMarks) {
  EXPECT_EQ(CombiningClass(U'a'), 0);
  EXPECT_EQ(CombiningClass(U'\u0301'), 230);
  EXPECT_EQ(CombiningClass(U'\u0323'), 220);
}

}  // namespace
}  // namespace longenc::tokenizer::internal
