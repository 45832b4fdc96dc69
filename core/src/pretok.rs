//! A hand-written pre-tokenizer for `o200k_base`: the same pieces as the tokenizer's
//! regex, without running a regex engine per piece.
//!
//! Counting tokens is "split the text into pieces with a regex, then byte-pair count each
//! piece". With a cache of piece counts (see `cost.rs`), the regex became the cost: the
//! `bpe-openai` splitter runs one anchored regex search per piece. This module walks the
//! text once, looking each character's class up in a table, and follows the pattern's
//! alternatives by hand, in the pattern's own priority order:
//!
//! ```text
//! 1  [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//! 2  [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//! 3  \p{N}{1,3}
//! 4   ?[^\s\p{L}\p{N}]+[\r\n/]*
//! 5  \s*[\r\n]+
//! 6  \s+(?!\S)
//! 7  \s+
//! ```
//!
//! Matching is leftmost-first (the first alternative that matches, greedy quantifiers
//! that give back one character at a time), which is what both tiktoken's and
//! `bpe-openai`'s engines do. The character classes are not hand-written either: they
//! are taken from `regex-syntax`, the same Unicode tables the regex engine uses, once
//! per process. Tests compare the pieces with `bpe-openai`'s splitter on the benchmark
//! corpus and on random text drawn from every class the pattern distinguishes.

use std::sync::OnceLock;

/// `\p{L}`.
const LETTER: u8 = 1;
/// `\p{N}`.
const NUMBER: u8 = 2;
/// `\s` (Unicode White_Space).
const SPACE: u8 = 4;
/// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]`.
const UPPER: u8 = 8;
/// `[\p{Ll}\p{Lm}\p{Lo}\p{M}]`.
const LOWER: u8 = 16;
/// `\r` or `\n`.
const NEWLINE: u8 = 32;

/// Letters of the contractions, and every character `(?i:x)` matches for each.
type Folds = Vec<(char, Vec<char>)>;

struct Tables {
    /// The class bits of every code point (0x110000 entries, 1.1 MB).
    class: Box<[u8]>,
    folds: Folds,
}

fn ranges_of(pattern: &str) -> Option<Vec<(u32, u32)>> {
    use regex_syntax::hir::{Class, HirKind};
    let hir = regex_syntax::parse(pattern).ok()?;
    match hir.kind() {
        HirKind::Class(Class::Unicode(cls)) => Some(
            cls.ranges()
                .iter()
                .map(|r| (r.start() as u32, r.end() as u32))
                .collect(),
        ),
        HirKind::Literal(lit) => {
            let s = std::str::from_utf8(&lit.0).ok()?;
            Some(s.chars().map(|c| (c as u32, c as u32)).collect())
        }
        _ => None,
    }
}

fn build_tables() -> Option<Tables> {
    let mut class = vec![0u8; 0x11_0000].into_boxed_slice();
    let classes: [(&str, u8); 6] = [
        (r"\p{L}", LETTER),
        (r"\p{N}", NUMBER),
        (r"\s", SPACE),
        (r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]", UPPER),
        (r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]", LOWER),
        (r"[\r\n]", NEWLINE),
    ];
    for (pattern, bit) in classes {
        for (lo, hi) in ranges_of(pattern)? {
            for cp in lo..=hi {
                *class.get_mut(cp as usize)? |= bit;
            }
        }
    }
    let mut folds = Vec::new();
    for letter in ['s', 't', 'r', 'e', 'v', 'm', 'l', 'd'] {
        let chars = ranges_of(&format!("(?i:{letter})"))?
            .into_iter()
            .flat_map(|(lo, hi)| (lo..=hi).filter_map(char::from_u32))
            .collect();
        folds.push((letter, chars));
    }
    Some(Tables { class, folds })
}

fn tables() -> Option<&'static Tables> {
    static TABLES: OnceLock<Option<Tables>> = OnceLock::new();
    TABLES.get_or_init(build_tables).as_ref()
}

/// The pieces of `text` under the o200k_base pattern, or `None` if the class tables
/// could not be built (never expected; callers then use the regex splitter).
pub fn split_o200k(text: &str) -> Option<O200kSplit<'_>> {
    let t = tables()?;
    Some(O200kSplit {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        class: &t.class,
        folds: &t.folds,
    })
}

/// Iterator over the o200k_base pieces of a text (see [`split_o200k`]).
pub struct O200kSplit<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    class: &'static [u8],
    folds: &'static Folds,
}

impl<'a> Iterator for O200kSplit<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.pos >= self.bytes.len() {
            return None;
        }
        let start = self.pos;
        let end = self.piece_end(start).max(start + 1);
        // `end` is always a character boundary (every step moves by whole characters);
        // `get` keeps that a non-panicking promise.
        let piece = self.text.get(start..end)?;
        self.pos = end;
        Some(piece)
    }
}

impl O200kSplit<'_> {
    /// The character at byte `i`: (code point, length in bytes). `(0, 0)` at the end.
    #[inline(always)]
    fn char_at(&self, i: usize) -> (u32, usize) {
        let b = self.bytes;
        let Some(&b0) = b.get(i) else {
            return (0, 0);
        };
        if b0 < 0x80 {
            return (b0 as u32, 1);
        }
        let cont = |k: usize| b.get(i + k).map_or(0, |&x| (x & 0x3f) as u32);
        if b0 < 0xe0 {
            (((b0 & 0x1f) as u32) << 6 | cont(1), 2)
        } else if b0 < 0xf0 {
            (((b0 & 0x0f) as u32) << 12 | cont(1) << 6 | cont(2), 3)
        } else {
            (
                ((b0 & 0x07) as u32) << 18 | cont(1) << 12 | cont(2) << 6 | cont(3),
                4,
            )
        }
    }

    /// The class bits and byte length of the character at byte `i`; `(0, 0)` at the end.
    #[inline(always)]
    fn class_at(&self, i: usize) -> (u8, usize) {
        let (cp, len) = self.char_at(i);
        if len == 0 {
            return (0, 0);
        }
        (self.class.get(cp as usize).copied().unwrap_or(0), len)
    }

    /// The end of the run of characters whose class bits satisfy `take`, from `i`.
    #[inline(always)]
    fn run_while(&self, mut i: usize, take: impl Fn(u8) -> bool) -> usize {
        loop {
            let (c, len) = self.class_at(i);
            if len == 0 || !take(c) {
                return i;
            }
            i += len;
        }
    }

    /// The end of the run of characters with any of `bits`, starting at `i`.
    #[inline(always)]
    fn run_end(&self, i: usize, bits: u8) -> usize {
        self.run_while(i, |c| c & bits != 0)
    }

    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)?` at `i`: the end after it (or `i`).
    fn contraction(&self, i: usize) -> usize {
        if self.bytes.get(i) != Some(&b'\'') {
            return i;
        }
        let is = |at: usize, letter: char| -> Option<usize> {
            let (cp, len) = self.char_at(at);
            let c = char::from_u32(cp)?;
            let (_, chars) = self.folds.iter().find(|(l, _)| *l == letter)?;
            (len > 0 && chars.contains(&c)).then_some(at + len)
        };
        let j = i + 1;
        for (first, second) in [
            ('s', None),
            ('t', None),
            ('r', Some('e')),
            ('v', Some('e')),
            ('m', None),
            ('l', Some('l')),
            ('d', None),
        ] {
            if let Some(k) = is(j, first) {
                match second {
                    None => return k,
                    Some(s) => {
                        if let Some(k2) = is(k, s) {
                            return k2;
                        }
                    }
                }
            }
        }
        i
    }

    /// Alternative 1 from `s` (after the optional prefix):
    /// `[UPPER]*[LOWER]+` then the contraction.
    fn alt1(&self, s: usize) -> Option<usize> {
        // UPPER* greedy; remember the end of its last character that is also LOWER,
        // which is where LOWER+ ends if the run is followed by no LOWER character.
        let mut i = s;
        let mut last_lower_end = None;
        loop {
            let (c, len) = self.class_at(i);
            if len == 0 || c & UPPER == 0 {
                break;
            }
            i += len;
            if c & LOWER != 0 {
                last_lower_end = Some(i);
            }
        }
        let (c, len) = self.class_at(i);
        let end = if len > 0 && c & LOWER != 0 {
            self.run_end(i, LOWER)
        } else {
            last_lower_end?
        };
        Some(self.contraction(end))
    }

    /// Alternative 2 from `s`: `[UPPER]+[LOWER]*` then the contraction.
    fn alt2(&self, s: usize) -> Option<usize> {
        let e = self.run_end(s, UPPER);
        if e == s {
            return None;
        }
        Some(self.contraction(self.run_end(e, LOWER)))
    }

    /// The end of the piece that starts at byte `i` (not at the end of the text).
    fn piece_end(&self, i: usize) -> usize {
        let (c0, l0) = self.class_at(i);
        // [^\r\n\p{L}\p{N}]? : the optional prefix of alternatives 1 and 2.
        let prefix = c0 & (LETTER | NUMBER | NEWLINE) == 0;
        if prefix {
            if let Some(e) = self.alt1(i + l0) {
                return e;
            }
        }
        if let Some(e) = self.alt1(i) {
            return e;
        }
        if prefix {
            if let Some(e) = self.alt2(i + l0) {
                return e;
            }
        }
        if let Some(e) = self.alt2(i) {
            return e;
        }
        // 3: \p{N}{1,3}
        if c0 & NUMBER != 0 {
            let mut e = i + l0;
            for _ in 0..2 {
                let (c, len) = self.class_at(e);
                if len == 0 || c & NUMBER == 0 {
                    break;
                }
                e += len;
            }
            return e;
        }
        // 4: ' '?[^\s\p{L}\p{N}]+[\r\n/]*
        let other = |c: u8, len: usize| len > 0 && c & (SPACE | LETTER | NUMBER) == 0;
        let mut s4 = None;
        if self.bytes.get(i) == Some(&b' ') {
            let (c1, l1) = self.class_at(i + 1);
            if other(c1, l1) {
                s4 = Some(i + 1);
            }
        }
        if s4.is_none() && other(c0, l0) {
            s4 = Some(i);
        }
        if let Some(s) = s4 {
            // "other" is a class of its own only by absence: punctuation, symbols,
            // marks, unassigned code points
            let mut e = self.run_while(s, |c| c & (SPACE | LETTER | NUMBER) == 0);
            while matches!(self.bytes.get(e), Some(b'\r' | b'\n' | b'/')) {
                e += 1;
            }
            return e;
        }
        // What is left starts with whitespace (a letter, number or "other" character
        // matched above). Walk the whitespace run once.
        let mut e = i;
        let mut last_newline_end = None;
        let mut last_char_start = i;
        let mut chars = 0usize;
        loop {
            let (c, len) = self.class_at(e);
            if len == 0 || c & SPACE == 0 {
                break;
            }
            last_char_start = e;
            e += len;
            chars += 1;
            if c & NEWLINE != 0 {
                last_newline_end = Some(e);
            }
        }
        // 5: \s*[\r\n]+ ends after the run's last newline
        if let Some(end) = last_newline_end {
            return end;
        }
        // 6 (end of text): \s+$
        if e >= self.bytes.len() {
            return e;
        }
        // 6: \s+(?!\S): all but the last whitespace character, which goes with the
        // next piece
        if chars >= 2 {
            return last_char_start;
        }
        // 7: \s+
        e.max(i + l0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn regex_pieces(text: &str) -> Vec<&str> {
        bpe_openai::o200k_base().split(text).collect()
    }

    fn fast_pieces(text: &str) -> Vec<&str> {
        split_o200k(text).map(|s| s.collect()).unwrap_or_default()
    }

    fn assert_same(text: &str) {
        let want = regex_pieces(text);
        let got = fast_pieces(text);
        assert_eq!(got, want, "pieces differ for {text:?}");
    }

    #[test]
    fn handpicked_texts() {
        for t in [
            "",
            "a",
            " ",
            "  ",
            "\n",
            "hello world",
            "Hello World",
            "HTTPServer isn't working, they'll say; I'M sure we'd've",
            "it'S fine 'RE 'Ll 'lL 'd 'x",
            "  \n\n  x  1  !",
            "foo  \tbar\r\n\r\n  baz   ",
            "1234567 12 3.14 1,000,000",
            "a/b//c/\n/\r\n",
            " //comment\n",
            "func main() {\n\tfmt.Println(\"hi\")\n}\n",
            "Ünïcödé Straße ſ 'ſ it'ſ",
            "ǅemal ǈ Ǉ ʰʱ ǅǅx",
            "e\u{301}e\u{301}\u{301} \u{301}x \u{301}",
            "日本語のテキスト 中文 한국어",
            "emoji 👍🏽 👨‍👩‍👧 🇩🇪!!",
            "Ⅻ ² ③ ٣٤٥٦",
            "\u{a0}\u{a0}x\u{2003}y\u{3000}",
            "x\u{a0}",
            "end with spaces   ",
            "tab\t",
            "\r",
            "\r\r\n \n",
            "'s",
            "''s",
            "don't",
            "ABCdef GHI jkl MnO",
            "__init__ self._x = -1",
        ] {
            assert_same(t);
        }
    }

    /// Characters from every class the pattern tells apart, plus the characters with
    /// special roles (space, newline, slash, apostrophe, the contraction letters).
    const ALPHABET: &[char] = &[
        'a', 'b', 's', 't', 'r', 'e', 'v', 'm', 'l', 'd', 'S', 'T', 'R', 'E', 'V', 'M', 'L', 'D',
        'X', 'ſ', 'K', 'ǅ', 'ʰ', 'ª', '中', 'ß', 'É', 'é', '\u{301}', '\u{903}', '\u{20dd}', '0',
        '7', '٣', '²', 'Ⅻ', '½', ' ', ' ', ' ', '\t', '\n', '\r', '\u{a0}', '\u{2028}', '\u{3000}',
        '\u{b}', '\u{c}', '\u{85}', '/', '\'', '"', '.', ',', '-', '_', '!', '(', '{', '#', '$',
        '€', '👍', '🏽', '\u{200d}', '\u{fe0f}', '\u{e000}', '\u{378}',
    ];

    #[test]
    fn random_texts_match_the_regex() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for round in 0..30_000 {
            let len = rng.random_range(0..if round % 10 == 0 { 200 } else { 24 });
            let text: String = (0..len)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
                .collect();
            assert_same(&text);
        }
    }

    #[test]
    fn every_code_point_alone_and_in_context() {
        // Each scalar value on its own and between the characters that change which
        // alternative applies: a class table error shows up here.
        let mut text = String::new();
        for cp in (0u32..0x3_0000).chain(0xe_0000..0xe_0200) {
            let Some(c) = char::from_u32(cp) else {
                continue;
            };
            text.clear();
            text.push(c);
            assert_same(&text);
            for (a, b) in [(" ", "a"), ("a", "'s"), ("A", "b"), (" ", "\n"), ("1", "1")] {
                text.clear();
                text.push_str(a);
                text.push(c);
                text.push_str(b);
                text.push(c);
                assert_same(&text);
            }
        }
    }

    #[test]
    fn corpus_text_matches_the_regex() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/sample/issues");
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let Ok(text) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            // the raw JSON and its decoded strings (escapes turned into real newlines)
            assert_same(&text);
            let decoded = text
                .replace("\\n", "\n")
                .replace("\\r", "\r")
                .replace("\\t", "\t");
            assert_same(&decoded);
            checked += 1;
        }
        assert!(checked >= 10, "expected the sample issues under {dir}");
    }
}
