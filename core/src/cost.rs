//! Cost: exact token counting with OpenAI's tokenizers, the chat-request token
//! formula, the built-in (user-overridable) Batch API price table, and the estimate
//! a job carries before it is submitted. See `core/COST.md` for the choices and figures.
//!
//! # Token counting
//!
//! Counts use `bpe-openai`, which gives exactly tiktoken's counts (cross-checked in
//! tests against `tiktoken-rs` and in the Python suite against `tiktoken`) and was the
//! faster of the two here. Its tokenizers are built once per process, on first use
//! (about 60 ms for o200k_base).
//!
//! Input tokens of one chat request (the OpenAI cookbook's formula for the gpt-4o era,
//! plus the schema):
//!
//! ```text
//! input_tokens = Σ over messages (TOKENS_PER_MESSAGE + tokens(role) + tokens(content))
//!              + REPLY_PRIMING_TOKENS
//!              + tokens(response_format as compact JSON)
//! ```
//!
//! The last term is an approximation: OpenAI turns the schema into its own internal
//! form, whose size is not published; counting the JSON we send is close and stable.
//!
//! # Prices and rounding
//!
//! Prices are USD per 1M tokens at Batch API rates. Costs are computed exactly in
//! integers (prices are kept to 6 decimals, i.e. micro-dollars per 1M tokens) and
//! rounded once, half away from zero, to 4 decimals: the `DECIMAL(10,4)` of
//! `batch_jobs.cost_estimate`. Per-item costs should be summed with
//! [`cost_usd_unrounded`] and rounded per job (the `DECIMAL` cast does it), or computed per job
//! from summed tokens with [`estimate_cost`].

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::processor::{IssueInput, Processor, ProcessorError};

/// Tokens the chat format adds around every message (cookbook value for gpt-4o and later).
pub(crate) const TOKENS_PER_MESSAGE: usize = 3;
/// Tokens that prime the assistant's reply (`<|start|>assistant<|message|>`).
pub(crate) const REPLY_PRIMING_TOKENS: usize = 3;
/// Extra output tokens assumed for reasoning models (o-series, gpt-5 family) when no
/// job history exists: their hidden reasoning is billed as output. A rough guess for a
/// short classification task at default effort; replaced by the history average as
/// soon as one job of this processor and model was collected.
pub(crate) const DEFAULT_REASONING_OUTPUT_TOKENS: u32 = 1_000;
/// Below this many bytes of text in total, [`count_many`]-style helpers stay on the
/// calling thread (starting threads costs more than it saves).
pub(crate) const PARALLEL_MIN_BYTES: usize = 256 * 1024;

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CostError {
    /// A user price row is unusable.
    #[error("invalid price for model '{}': {reason} (prices are USD per 1M tokens, from 0 to 1,000,000)", crate::text::echo(model))]
    InvalidPrice {
        /// The row's model.
        model: String,
        /// What is wrong.
        reason: String,
    },
    /// The processor could not be prepared (a bug).
    #[error(transparent)]
    Processor(#[from] ProcessorError),
}

// ---------------------------------------------------------------------------
// Tokenizers
// ---------------------------------------------------------------------------

/// A tiktoken encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// `o200k_base`: gpt-4o, gpt-4.1, gpt-4.5, o1, o3, o4-mini, gpt-5 and later.
    O200kBase,
    /// `cl100k_base`: gpt-4, gpt-3.5-turbo.
    Cl100kBase,
}

/// Model name prefixes (exact name, or followed by `-` or `.`) that use o200k_base.
const O200K_PREFIXES: &[&str] = &[
    "gpt-5",
    "gpt-4.1",
    "gpt-4.5",
    "gpt-4o",
    "chatgpt-4o",
    "o1",
    "o3",
    "o4",
    "gpt-oss",
];
/// Model name prefixes that use cl100k_base (checked after [`O200K_PREFIXES`]).
const CL100K_PREFIXES: &[&str] = &["gpt-4", "gpt-3.5", "gpt-35"];

fn has_family_prefix(model: &str, prefix: &str) -> bool {
    model
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('-') || rest.starts_with('.'))
}

/// Lowercases and drops a fine-tune wrapper: `ft:gpt-4o-mini:org::id` → `gpt-4o-mini`.
fn base_model(model: &str) -> String {
    let m = model.trim().to_ascii_lowercase();
    match m.strip_prefix("ft:") {
        Some(rest) => rest.split(':').next().unwrap_or("").to_string(),
        None => m,
    }
}

/// Pieces longer than this are counted without the cache (they rarely repeat).
const PIECE_CACHE_MAX_LEN: usize = 48;
/// Entries per thread and encoding before the cache starts over (bounds memory to a
/// few tens of MB per thread).
const PIECE_CACHE_MAX: usize = 400_000;

/// FxHash (the rustc hasher, `rustc-hash`): fast for short keys; the keys are not
/// attacker-chosen in a way that matters (worst case: a slower count).
type FxMap<K> = rustc_hash::FxHashMap<K, u32>;

/// Pieces up to this many bytes are keyed inline, as one `u128` (the bytes, then the
/// length in the last byte): no allocation, no pointer to follow, no `memcmp`. Most
/// pieces are this short.
const SHORT_PIECE: usize = 15;

/// Piece → token count, for one encoding on one thread.
#[derive(Default)]
struct PieceCache {
    short: FxMap<u128>,
    long: FxMap<Box<[u8]>>,
}

impl PieceCache {
    fn short_key(bytes: &[u8]) -> u128 {
        let mut buf = [0u8; 16];
        let n = bytes.len().min(SHORT_PIECE);
        buf[..n].copy_from_slice(&bytes[..n]);
        buf[15] = n as u8;
        u128::from_le_bytes(buf)
    }

    /// The count of `piece`, from the cache or from `count` (then cached).
    #[inline]
    fn get_or_count(&mut self, piece: &[u8], count: impl FnOnce(&[u8]) -> usize) -> usize {
        if piece.len() <= SHORT_PIECE {
            *self
                .short
                .entry(Self::short_key(piece))
                .or_insert_with(|| count(piece) as u32) as usize
        } else {
            // looked up by slice first: an owned key is only made for a new piece
            if let Some(n) = self.long.get(piece) {
                return *n as usize;
            }
            let n = count(piece);
            self.long.insert(piece.into(), n as u32);
            n
        }
    }

    fn len(&self) -> usize {
        self.short.len() + self.long.len()
    }

    fn clear(&mut self) {
        self.short.clear();
        self.long.clear();
    }
}

thread_local! {
    /// Piece → token count, one cache per encoding.
    static PIECE_COUNTS: std::cell::RefCell<[PieceCache; 2]> =
        std::cell::RefCell::new([PieceCache::default(), PieceCache::default()]);
}

impl Encoding {
    /// The tiktoken name, e.g. `o200k_base`.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::O200kBase => "o200k_base",
            Encoding::Cl100kBase => "cl100k_base",
        }
    }

    /// The encoding OpenAI uses for `model` (dated snapshots and `ft:` models included),
    /// or `None` for a model this crate does not know.
    pub fn for_model(model: &str) -> Option<Encoding> {
        let m = base_model(model);
        if O200K_PREFIXES.iter().any(|p| has_family_prefix(&m, p)) {
            Some(Encoding::O200kBase)
        } else if CL100K_PREFIXES.iter().any(|p| has_family_prefix(&m, p)) {
            Some(Encoding::Cl100kBase)
        } else {
            None
        }
    }

    /// [`Encoding::for_model`], falling back to o200k_base as an approximation for
    /// unknown models (e.g. other providers). The flag says whether the count is exact.
    pub fn for_model_or_approx(model: &str) -> (Encoding, bool) {
        match Encoding::for_model(model) {
            Some(e) => (e, true),
            None => (Encoding::O200kBase, false),
        }
    }

    fn tokenizer(self) -> &'static bpe_openai::Tokenizer {
        // bpe-openai keeps each tokenizer in a process-wide LazyLock: built once.
        match self {
            Encoding::O200kBase => bpe_openai::o200k_base(),
            Encoding::Cl100kBase => bpe_openai::cl100k_base(),
        }
    }

    /// The number of tokens of `text` (as tiktoken's `encode_ordinary`: special-token
    /// text such as `<|endoftext|>` counts as plain text).
    ///
    /// Same result as `Tokenizer::count` (pre-tokenize, then byte-pair count each
    /// piece), with a per-thread cache of piece counts in front of the byte-pair
    /// step: a piece's count never depends on its neighbours, and issue text repeats
    /// the same pieces (words, log fragments) all the time, so most are looked up.
    pub fn count(self, text: &str) -> usize {
        let tok = self.tokenizer();
        PIECE_COUNTS.with(|cache| {
            let Ok(mut cache) = cache.try_borrow_mut() else {
                return tok.count(text);
            };
            let cache = &mut cache[self as usize];
            if cache.len() > PIECE_CACHE_MAX {
                cache.clear();
            }
            let count_piece = |piece: &str| {
                let bytes = piece.as_bytes();
                if bytes.len() == 1 {
                    return 1; // every byte is a token of its own in both encodings
                }
                if bytes.len() > PIECE_CACHE_MAX_LEN {
                    return tok.bpe.count(bytes);
                }
                cache.get_or_count(bytes, |b| tok.bpe.count(b))
            };
            // o200k: the hand-written splitter (same pieces, several times faster);
            // cl100k, or if its tables could not be built: the regex
            match (self, crate::pretok::split_o200k(text)) {
                (Encoding::O200kBase, Some(pieces)) => pieces.map(count_piece).sum(),
                _ => tok.split(text).map(count_piece).sum(),
            }
        })
    }

    /// Counts many texts, in parallel across the available cores when there is enough
    /// text to be worth it. The result is in input order.
    pub fn count_many(self, texts: &[&str]) -> Vec<usize> {
        par_map(texts, |t| t.len(), |t| self.count(t))
    }
}

/// [`Encoding::count_many`] with o200k_base, the encoding of every current OpenAI model.
pub fn count_many(texts: &[&str]) -> Vec<usize> {
    Encoding::O200kBase.count_many(texts)
}

/// Maps `f` over `items` on up to `available_parallelism` threads, balancing by
/// `weight` (bytes of text). Small inputs run on the calling thread.
pub fn par_map<T: Sync, R: Send>(
    items: &[T],
    weight: impl Fn(&T) -> usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let total: usize = items.iter().map(&weight).sum();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores.min(total / PARALLEL_MIN_BYTES + 1).min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    // Small blocks handed out through an atomic cursor: a thread that drew long texts
    // simply takes fewer blocks.
    let block = (items.len() / (threads * 16)).clamp(1, 256);
    let blocks = items.len().div_ceil(block);
    let next = AtomicUsize::new(0);
    let mut parts: Vec<(usize, Vec<R>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let b = next.fetch_add(1, Ordering::Relaxed);
                        if b >= blocks {
                            break;
                        }
                        let lo = b * block;
                        let hi = (lo + block).min(items.len());
                        let chunk = items.get(lo..hi).unwrap_or(&[]);
                        done.push((b, chunk.iter().map(&f).collect::<Vec<R>>()));
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(parts) => parts,
                // A panicking worker re-raises its panic on this thread, like the
                // serial path would; the extension catches panics at its boundary.
                Err(p) => std::panic::resume_unwind(p),
            })
            .collect()
    });
    parts.sort_unstable_by_key(|(b, _)| *b);
    parts.into_iter().flat_map(|(_, r)| r).collect()
}

/// Counts the input tokens of a processor's requests for one encoding: the constant
/// part (system message, schema, reply priming) is counted once at construction.
#[derive(Debug, Clone)]
pub struct RequestTokenCounter<'a> {
    processor: &'a Processor,
    encoding: Encoding,
    fixed: usize,
    schema: usize,
    user_overhead: usize,
}

impl<'a> RequestTokenCounter<'a> {
    /// Prepares a counter for `processor` with `encoding`.
    pub fn new(processor: &'a Processor, encoding: Encoding) -> Result<Self, CostError> {
        let schema = encoding.count(processor.response_format_json()?.get());
        let system = TOKENS_PER_MESSAGE
            + encoding.count("system")
            + encoding.count(processor.system_prompt());
        Ok(RequestTokenCounter {
            processor,
            encoding,
            fixed: REPLY_PRIMING_TOKENS + system + schema,
            schema,
            user_overhead: TOKENS_PER_MESSAGE + encoding.count("user"),
        })
    }

    /// The encoding used.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Tokens every request of this processor costs before the user message: reply
    /// priming, the system message and the schema.
    pub fn fixed_tokens(&self) -> usize {
        self.fixed
    }

    /// The part of [`Self::fixed_tokens`] that is the schema (the approximate term).
    pub fn schema_tokens(&self) -> usize {
        self.schema
    }

    /// Input tokens of a request whose user message is `user_text`.
    pub fn count_user_text(&self, user_text: &str) -> usize {
        self.fixed + self.user_overhead + self.encoding.count(user_text)
    }

    /// Input tokens of the request for `issue` (rendered as it will be sent,
    /// truncation included).
    pub fn count_issue(&self, issue: &IssueInput) -> usize {
        self.count_user_text(&self.processor.user_message(issue).text)
    }

    /// [`Self::count_issue`] for many issues, rendered and counted in parallel; the
    /// result is in input order.
    pub fn count_issues(&self, issues: &[IssueInput]) -> Vec<usize> {
        par_map(
            issues,
            |i| {
                i.title.len()
                    + i.body.as_ref().map_or(0, String::len)
                    + i.comments.iter().map(|c| c.body.len()).sum::<usize>()
            },
            |i| self.count_issue(i),
        )
    }
}

// ---------------------------------------------------------------------------
// How input tokens are estimated
// ---------------------------------------------------------------------------

/// Claude's input tokens are estimated as the o200k_base count times this many
/// percent (rounded up). There is no public Claude tokenizer; Anthropic's newer
/// tokenizers produce more tokens than OpenAI's o200k_base for the same English text
/// and code, and published comparisons put them at roughly 1.1 to 1.3 times. 125 %
/// errs high, so that an estimate and a `max_cost` budget are not undercut; the actual
/// tokens come from each result's `usage` and `batch_history()` shows both.
pub const CLAUDE_PERCENT_OF_O200K: u64 = 125;

/// How a job's input tokens are estimated: counted with a tiktoken encoding, exactly
/// (the model's own), approximately (no tokenizer known for the model), or scaled
/// (Claude). Recorded with the job (`batch_jobs.estimate_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenEstimate {
    /// The encoding counted with.
    pub encoding: Encoding,
    /// Whether it is the model's own tokenizer.
    pub exact: bool,
    /// The count is multiplied by this many percent (100: as counted).
    pub percent: u64,
}

impl TokenEstimate {
    /// The method for `model`.
    pub fn for_model(model: &str) -> TokenEstimate {
        if crate::models::is_claude(base_model(model).as_str()) {
            return TokenEstimate {
                encoding: Encoding::O200kBase,
                exact: false,
                percent: CLAUDE_PERCENT_OF_O200K,
            };
        }
        let (encoding, exact) = Encoding::for_model_or_approx(model);
        TokenEstimate {
            encoding,
            exact,
            percent: 100,
        }
    }

    /// Scales a count made with [`TokenEstimate::encoding`] (rounded up).
    pub fn scale(&self, counted: u64) -> u64 {
        if self.percent == 100 {
            counted
        } else {
            counted.saturating_mul(self.percent).div_ceil(100)
        }
    }

    /// The text kept in `batch_jobs.estimate_method`.
    pub fn label(&self) -> String {
        match (self.exact, self.percent) {
            (true, _) => format!("{} (the model's tokenizer)", self.encoding.name()),
            (false, 100) => format!(
                "{} (approximation: no tokenizer known for the model)",
                self.encoding.name()
            ),
            (false, p) => format!(
                "{} x {}.{:02} (no public tokenizer for the model)",
                self.encoding.name(),
                p / 100,
                p % 100
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// Prices
// ---------------------------------------------------------------------------

/// Built-in Batch API prices, USD per 1M tokens: (model, input, output).
///
/// Source: OpenAI's pricing page (platform.openai.com/docs/pricing, now
/// developers.openai.com/api/docs/pricing), standard rates as quoted in copies of that
/// page dated March to November 2026, halved for the Batch API (OpenAI's Batch API
/// discount is 50 % on input and output). Checked 2026-11. Variants
/// priced differently from their family (pro, mini of o3, the 2024-05-13 gpt-4o
/// snapshot) are listed so that prefix matching cannot price them as the base model.
/// Users override or extend this table with their own rows.
pub(crate) const BUILTIN_BATCH_PRICES: &[(&str, f64, f64)] = &[
    ("gpt-5", 0.625, 5.00),
    ("gpt-5-mini", 0.125, 1.00),
    ("gpt-5-nano", 0.025, 0.20),
    ("gpt-5-pro", 7.50, 60.00),
    ("gpt-4.1", 1.00, 4.00),
    ("gpt-4.1-mini", 0.20, 0.80),
    ("gpt-4.1-nano", 0.05, 0.20),
    ("gpt-4o", 1.25, 5.00),
    ("gpt-4o-2024-05-13", 2.50, 7.50),
    ("gpt-4o-mini", 0.075, 0.30),
    ("o3", 1.00, 4.00),
    ("o3-pro", 10.00, 40.00),
    ("o3-mini", 0.55, 2.20),
    ("o4-mini", 0.55, 2.20),
    ("o1", 7.50, 30.00),
    ("o1-mini", 0.55, 2.20),
    ("gpt-4-turbo", 5.00, 15.00),
    ("gpt-3.5-turbo", 0.25, 0.75),
    // Anthropic's Message Batches (50 % of the standard rates). Source: Anthropic's
    // pricing page (docs.anthropic.com/en/docs/about-claude/pricing), whose batch table
    // lists Opus 4.1 at 7.50 / 37.50; the 4.5 and 4.6
    // generation halved from the standard rates of copies of that page dated January
    // to March 2026 (Opus 5 / 25, Sonnet 3 / 15, Haiku 4.5 1 / 5). Checked 2026-11.
    // Only models that take structured outputs are listed (older ones, Claude 3.x,
    // claude-opus-4 and claude-sonnet-4, are refused at bind).
    ("claude-opus-4-6", 2.50, 12.50),
    ("claude-opus-4-5", 2.50, 12.50),
    ("claude-opus-4-1", 7.50, 37.50),
    ("claude-sonnet-4-6", 1.50, 7.50),
    ("claude-sonnet-4-5", 1.50, 7.50),
    ("claude-haiku-4-5", 0.50, 2.50),
];

/// Words in a model name that mark a variant priced differently from its family:
/// a prefix match never crosses them (`o3-deep-research` is not priced as `o3`).
const PREFIX_STOP_WORDS: &[&str] = &[
    "pro",
    "realtime",
    "audio",
    "deep",
    "research",
    "search",
    "transcribe",
    "tts",
    "image",
    "codex",
    "mini",
    "nano",
];

/// One price row: USD per 1M tokens, at Batch API rates.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelPrice {
    /// The model name (lowercase) the row applies to; see [`PriceTable::lookup`].
    pub model: String,
    /// USD per 1M input tokens.
    pub input_per_mtok: f64,
    /// USD per 1M output tokens.
    pub output_per_mtok: f64,
}

/// Where a price row came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceSource {
    /// [`BUILTIN_BATCH_PRICES`].
    BuiltIn,
    /// A row given by the caller (the user's price table).
    User,
}

/// How a model name found its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    /// The row's model is the name itself (case-insensitive).
    Exact,
    /// The name is a dated snapshot of the row's model (`gpt-4o-2024-08-06`,
    /// `gpt-4-0613`).
    Snapshot,
    /// The row's model is the longest `-`-separated prefix of the name.
    Prefix,
}

/// A successful [`PriceTable::lookup`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PriceMatch<'a> {
    /// The row used.
    pub price: &'a ModelPrice,
    /// Built-in or user row.
    pub source: PriceSource,
    /// How the name matched it.
    pub kind: MatchKind,
}

/// No price for a model: not an error, the estimate is then NULL with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no price known for model '{}': {reason}", crate::text::echo(model))]
pub struct NoPrice {
    /// The model asked for.
    pub model: String,
    /// Why, and what to do.
    pub reason: String,
}

/// Batch prices per model: the built-in rows, overridden and extended by user rows.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceTable {
    rows: Vec<(ModelPrice, PriceSource)>,
}

impl Default for PriceTable {
    fn default() -> Self {
        PriceTable::builtin()
    }
}

/// Price in micro-dollars per 1M tokens (6 decimals kept).
fn micro(price: f64) -> u128 {
    // Callers validate 0 <= price <= 1e6, so this fits and is non-negative.
    (price * 1_000_000.0).round().max(0.0) as u128
}

fn check_price(model: &str, what: &str, v: f64) -> Result<(), CostError> {
    if v.is_finite() && (0.0..=1_000_000.0).contains(&v) {
        Ok(())
    } else {
        Err(CostError::InvalidPrice {
            model: model.to_string(),
            reason: format!("{what} price {v} is not a number from 0 to 1,000,000"),
        })
    }
}

/// Strips a dated-snapshot suffix: `-YYYY-MM-DD` or `-MMDD`.
fn strip_snapshot(model: &str) -> Option<&str> {
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    // `rsplitn` works on any UTF-8 input; no byte index can land inside a character.
    let mut parts = model.rsplitn(4, '-');
    if let (Some(d), Some(m), Some(y), Some(base)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    {
        if digits(y, 4) && digits(m, 2) && digits(d, 2) && !base.is_empty() {
            return Some(base);
        }
    }
    // `-0613` (OpenAI) and `-20251001` (Anthropic).
    match model.rsplit_once('-') {
        Some((base, d)) if (digits(d, 4) || digits(d, 8)) && !base.is_empty() => Some(base),
        _ => None,
    }
}

impl PriceTable {
    /// The built-in table ([`BUILTIN_BATCH_PRICES`]).
    pub fn builtin() -> Self {
        PriceTable {
            rows: BUILTIN_BATCH_PRICES
                .iter()
                .map(|&(m, i, o)| {
                    (
                        ModelPrice {
                            model: m.to_string(),
                            input_per_mtok: i,
                            output_per_mtok: o,
                        },
                        PriceSource::BuiltIn,
                    )
                })
                .collect(),
        }
    }

    /// A table with no rows (only user rows will match).
    pub fn empty() -> Self {
        PriceTable { rows: Vec::new() }
    }

    /// Adds user rows: a row for a model already in the table replaces it (names
    /// compare case-insensitively; a later user row wins over an earlier one), others
    /// are added. Rejects negative, non-finite or absurd prices and empty names.
    pub fn with_overrides(
        mut self,
        rows: impl IntoIterator<Item = ModelPrice>,
    ) -> Result<Self, CostError> {
        for row in rows {
            let model = row.model.trim().to_ascii_lowercase();
            if model.is_empty() {
                return Err(CostError::InvalidPrice {
                    model: row.model,
                    reason: "the model name is empty".to_string(),
                });
            }
            check_price(&model, "input", row.input_per_mtok)?;
            check_price(&model, "output", row.output_per_mtok)?;
            let row = ModelPrice { model, ..row };
            self.rows.retain(|(r, _)| r.model != row.model);
            self.rows.push((row, PriceSource::User));
        }
        Ok(self)
    }

    /// All rows, built-in and user.
    pub fn rows(&self) -> impl Iterator<Item = (&ModelPrice, PriceSource)> {
        self.rows.iter().map(|(r, s)| (r, *s))
    }

    fn find(&self, name: &str) -> Option<(&ModelPrice, PriceSource)> {
        self.rows
            .iter()
            .find(|(r, _)| r.model == name)
            .map(|(r, s)| (r, *s))
    }

    /// The row for `model`: an exact (case-insensitive) match; else, for a dated
    /// snapshot, the undated model; else the row whose model is the longest prefix of
    /// the name ending at a `-`, provided the rest names no differently priced variant
    /// (`pro`, `mini`, `realtime`, ...). Fine-tuned (`ft:`) models match only an exact
    /// row, since they are priced differently from their base model.
    pub fn lookup(&self, model: &str) -> Result<PriceMatch<'_>, NoPrice> {
        let name = model.trim().to_ascii_lowercase();
        fn matched(hit: (&ModelPrice, PriceSource), kind: MatchKind) -> PriceMatch<'_> {
            PriceMatch {
                price: hit.0,
                source: hit.1,
                kind,
            }
        }
        if let Some(hit) = self.find(&name) {
            return Ok(matched(hit, MatchKind::Exact));
        }
        let no_price = |reason: &str| NoPrice {
            model: model.to_string(),
            reason: reason.to_string(),
        };
        if name.starts_with("ft:") {
            return Err(no_price(
                "fine-tuned models have their own prices; add a row for this exact name to the price table",
            ));
        }
        if let Some(undated) = strip_snapshot(&name) {
            if let Some(hit) = self.find(undated) {
                return Ok(matched(hit, MatchKind::Snapshot));
            }
        }
        let mut best: Option<(&ModelPrice, PriceSource)> = None;
        for (row, source) in &self.rows {
            let Some(rest) = name
                .strip_prefix(row.model.as_str())
                .and_then(|r| r.strip_prefix('-'))
            else {
                continue;
            };
            if rest.split('-').any(|w| PREFIX_STOP_WORDS.contains(&w)) {
                continue;
            }
            // `claude-opus-4-7` is a newer version, not a variant of `claude-opus-4`.
            if rest.split('-').next().is_some_and(|w| {
                (1..=2).contains(&w.len()) && w.bytes().all(|b| b.is_ascii_digit())
            }) {
                continue;
            }
            if best.is_none_or(|(b, _)| row.model.len() > b.model.len()) {
                best = Some((row, *source));
            }
        }
        best.map(|hit| matched(hit, MatchKind::Prefix)).ok_or_else(|| {
            no_price("the model is not in the built-in price table; add a row with its Batch API prices (USD per 1M tokens)")
        })
    }
}

/// The exact cost in units of 1e-12 USD (prices kept to 6 decimals).
fn cost_picousd(input_tokens: u64, output_tokens: u64, price: &ModelPrice) -> u128 {
    u128::from(input_tokens) * micro(price.input_per_mtok)
        + u128::from(output_tokens) * micro(price.output_per_mtok)
}

/// The cost in ten-thousandths of a USD (the scaled integer of a `DECIMAL(10,4)`),
/// computed exactly and rounded half up. Saturates at `i64::MAX`.
pub(crate) fn estimate_cost_ten_thousandths(
    input_tokens: u64,
    output_tokens: u64,
    price: &ModelPrice,
) -> i64 {
    const UNIT: u128 = 100_000_000; // 1e-4 USD in 1e-12 USD
    let units = (cost_picousd(input_tokens, output_tokens, price) + UNIT / 2) / UNIT;
    i64::try_from(units).unwrap_or(i64::MAX)
}

/// The cost in USD of `input_tokens` and `output_tokens` at `price`, rounded half up
/// to 4 decimals (see the module docs). Equals
/// `round(input × input_per_mtok / 1e6 + output × output_per_mtok / 1e6, 4)` computed
/// in decimal arithmetic.
pub fn estimate_cost(input_tokens: u64, output_tokens: u64, price: &ModelPrice) -> f64 {
    estimate_cost_ten_thousandths(input_tokens, output_tokens, price) as f64 / 10_000.0
}

/// The cost in USD without rounding (for summing per-item costs).
pub fn cost_usd_unrounded(input_tokens: u64, output_tokens: u64, price: &ModelPrice) -> f64 {
    cost_picousd(input_tokens, output_tokens, price) as f64 / 1e12
}

// ---------------------------------------------------------------------------
// Output tokens and the job estimate
// ---------------------------------------------------------------------------

/// Whether `model` is a reasoning model whose hidden reasoning is billed as output
/// (o1, o3, o4-mini, the gpt-5 family except `gpt-5-chat`).
pub(crate) fn is_reasoning_model(model: &str) -> bool {
    let m = base_model(model);
    if m.starts_with("gpt-5") && m.contains("chat") {
        return false;
    }
    ["o1", "o3", "o4", "gpt-5"]
        .iter()
        .any(|p| has_family_prefix(&m, p))
}

/// Output tokens to expect per request: the caller's history average for this
/// processor and model when there is one (rounded up), otherwise the processor's
/// default plus [`DEFAULT_REASONING_OUTPUT_TOKENS`] for reasoning models.
pub fn expected_output_tokens(
    processor: &Processor,
    model: &str,
    history_average: Option<f64>,
) -> u64 {
    match history_average {
        Some(avg) if avg.is_finite() && avg > 0.0 => avg.ceil() as u64,
        _ => {
            let base = u64::from(processor.default_output_tokens());
            if is_reasoning_model(model) {
                base + u64::from(DEFAULT_REASONING_OUTPUT_TOKENS)
            } else {
                base
            }
        }
    }
}

/// The price row for `model` and a note for the user when the estimate is partial (no
/// exact tokenizer, or no price). The one place a job's estimate is priced.
pub fn price_and_note(prices: &PriceTable, model: &str) -> (Option<ModelPrice>, Option<String>) {
    let mut notes = Vec::new();
    let method = TokenEstimate::for_model(model);
    if !method.exact {
        notes.push(format!(
            "input tokens estimated as {}: no tokenizer is known for model '{}'",
            method.label(),
            crate::text::echo(model)
        ));
    }
    let price = match prices.lookup(model) {
        Ok(m) => {
            if m.kind == MatchKind::Prefix {
                notes.push(format!(
                    "priced as '{}' (closest known model)",
                    m.price.model
                ));
            }
            Some(m.price.clone())
        }
        Err(no) => {
            notes.push(no.to_string());
            None
        }
    };
    (price, (!notes.is_empty()).then(|| notes.join("; ")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::processor::{processor_by_name, CommentInput};

    #[allow(dead_code)]
    mod mixed_text {
        include!("../testdata/mixed_text.rs");
    }

    fn pl() -> &'static Processor {
        processor_by_name("product-labeling").unwrap()
    }

    fn price(i: f64, o: f64) -> ModelPrice {
        ModelPrice {
            model: "m".into(),
            input_per_mtok: i,
            output_per_mtok: o,
        }
    }

    #[test]
    fn known_counts() {
        // Values from tiktoken (Python) for o200k_base and cl100k_base.
        assert_eq!(Encoding::O200kBase.count("Hello world"), 2);
        assert_eq!(Encoding::O200kBase.count(""), 0);
        assert_eq!(
            Encoding::O200kBase.count("Hello world, 🦀 héllo\n\n  code()"),
            12
        );
        assert_eq!(Encoding::Cl100kBase.count("Hello world"), 2);
    }

    #[test]
    fn matches_tiktoken_rs_on_mixed_text() {
        let texts = mixed_text::samples(42, 150, 4_000);
        let o200k = tiktoken_rs::o200k_base_singleton();
        let cl100k = tiktoken_rs::cl100k_base_singleton();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let ours = Encoding::O200kBase.count_many(&refs);
        for (t, n) in texts.iter().zip(&ours) {
            assert_eq!(
                *n,
                o200k.encode_ordinary(t).len(),
                "o200k mismatch on {t:?}"
            );
        }
        for t in texts.iter().take(50) {
            assert_eq!(
                Encoding::Cl100kBase.count(t),
                cl100k.encode_ordinary(t).len(),
                "cl100k mismatch on {t:?}"
            );
        }
        // Edge cases around the pre-tokenizer's look-ahead and special-token text.
        for t in [
            " ",
            "  ",
            "\n",
            " \n ",
            "a  ",
            "a \n\n b",
            "\r\n\r\n",
            "<|endoftext|>",
            "'s'S'T",
            "I'M",
            "123456789",
            "x\u{301}",
            "\u{fe0f}",
            "👨‍👩‍👧‍👦",
            "   a",
            "a\t\tb",
        ] {
            assert_eq!(
                Encoding::O200kBase.count(t),
                o200k.encode_ordinary(t).len(),
                "{t:?}"
            );
            assert_eq!(
                Encoding::Cl100kBase.count(t),
                cl100k.encode_ordinary(t).len(),
                "{t:?}"
            );
        }
    }

    #[test]
    fn count_many_parallel_equals_serial() {
        // Big enough to take the parallel path.
        let texts = mixed_text::samples(9, 160, 4_000);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        assert!(refs.iter().map(|t| t.len()).sum::<usize>() > PARALLEL_MIN_BYTES);
        let par = count_many(&refs);
        let ser: Vec<usize> = refs.iter().map(|t| Encoding::O200kBase.count(t)).collect();
        assert_eq!(par, ser);
        assert!(count_many(&[]).is_empty());
        assert_eq!(count_many(&["Hello world"]), vec![2]);
    }

    #[test]
    fn model_encodings() {
        use Encoding::*;
        for m in [
            "gpt-4o",
            "gpt-4o-2024-08-06",
            "gpt-4o-mini",
            "gpt-4.1-nano",
            "gpt-4.5-preview",
            "o1",
            "o1-mini",
            "o3",
            "o3-mini",
            "o4-mini-2025-04-16",
            "gpt-5",
            "gpt-5-nano",
            "gpt-5.1",
            "GPT-4O",
            "ft:gpt-4o-mini:acme::abc123",
            "chatgpt-4o-latest",
        ] {
            assert_eq!(Encoding::for_model(m), Some(O200kBase), "{m}");
        }
        for m in [
            "gpt-4",
            "gpt-4-0613",
            "gpt-4-turbo",
            "gpt-3.5-turbo",
            "gpt-35-turbo",
        ] {
            assert_eq!(Encoding::for_model(m), Some(Cl100kBase), "{m}");
        }
        for m in ["claude-sonnet-4", "o10", "gpt-40", "", "llama"] {
            assert_eq!(Encoding::for_model(m), None, "{m}");
        }
        assert_eq!(Encoding::for_model_or_approx("claude"), (O200kBase, false));
        assert_eq!(Encoding::for_model_or_approx("gpt-4o"), (O200kBase, true));
        assert_eq!(O200kBase.name(), "o200k_base");
    }

    #[test]
    fn request_counter_formula() {
        let e = Encoding::O200kBase;
        let c = RequestTokenCounter::new(pl(), e).unwrap();
        let schema = e.count(pl().response_format_json().unwrap().get());
        assert_eq!(c.schema_tokens(), schema);
        let system = 3 + e.count("system") + e.count(pl().system_prompt());
        assert_eq!(c.fixed_tokens(), 3 + system + schema);
        let user = "Hello world";
        assert_eq!(
            c.count_user_text(user),
            c.fixed_tokens() + 3 + e.count("user") + 2
        );
        let issue = IssueInput {
            id: 1,
            org: "o".into(),
            repo: "r".into(),
            number: 1,
            author: "octocat".into(),
            title: "t".into(),
            body: Some("b".into()),
            state: "open".into(),
            labels: vec![],
            comments: vec![CommentInput {
                author: "a".into(),
                body: "c".into(),
            }],
        };
        assert_eq!(
            c.count_issue(&issue),
            c.count_user_text(&pl().user_message(&issue).text)
        );
        // Parallel path agrees with the serial one.
        let texts = mixed_text::samples(3, 80, 8_000);
        let issues: Vec<IssueInput> = texts
            .iter()
            .enumerate()
            .map(|(n, t)| IssueInput {
                id: n as i64,
                body: Some(t.clone()),
                ..issue.clone()
            })
            .collect();
        let par = c.count_issues(&issues);
        let ser: Vec<usize> = issues.iter().map(|i| c.count_issue(i)).collect();
        assert_eq!(par, ser);
        // Sanity: the constant part is a few hundred tokens, not thousands.
        assert!(
            (300..3_000).contains(&c.fixed_tokens()),
            "{}",
            c.fixed_tokens()
        );
    }

    /// The count a reader of the JSONL file gets with the documented formula (what the
    /// Python end-to-end test does with tiktoken) equals the estimate's count.
    #[test]
    fn count_matches_formula_over_the_request_line() {
        use crate::requests::{write_request_line, RequestOptions};
        let e = Encoding::O200kBase;
        let c = RequestTokenCounter::new(pl(), e).unwrap();
        let issue = IssueInput {
            id: 5,
            org: "acme".into(),
            repo: "w".into(),
            number: 3,
            author: "octocat".into(),
            title: "Crash 🦀 \"q\"".into(),
            body: Some("body\n\ttext é \u{1} <|endoftext|>".into()),
            state: "open".into(),
            labels: vec!["product::kots".into(), "bug".into()],
            comments: vec![CommentInput {
                author: "a".into(),
                body: "c".into(),
            }],
        };
        let mut out = Vec::new();
        write_request_line(
            &mut out,
            "job_1-i5",
            pl(),
            &issue,
            &RequestOptions::new("gpt-4o-mini"),
        )
        .unwrap();
        let line = String::from_utf8(out).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let body = &v["body"];
        let mut n = REPLY_PRIMING_TOKENS;
        for m in body["messages"].as_array().unwrap() {
            n += TOKENS_PER_MESSAGE
                + e.count(m["role"].as_str().unwrap())
                + e.count(m["content"].as_str().unwrap());
        }
        // serde_json without preserve_order would sort keys: take the bytes as sent.
        let rf = pl().response_format_json().unwrap().get();
        assert!(line.contains(&format!("\"response_format\":{rf}")));
        n += e.count(rf);
        assert_eq!(c.count_issue(&issue), n);
    }

    #[test]
    fn price_lookup() {
        let t = PriceTable::builtin();
        let get = |m: &str| t.lookup(m).map(|p| (p.price.model.clone(), p.kind));
        assert_eq!(get("gpt-4o").unwrap(), ("gpt-4o".into(), MatchKind::Exact));
        assert_eq!(get("GPT-4o").unwrap(), ("gpt-4o".into(), MatchKind::Exact));
        assert_eq!(
            get("gpt-4o-2024-08-06").unwrap(),
            ("gpt-4o".into(), MatchKind::Snapshot)
        );
        assert_eq!(
            get("gpt-4o-2024-05-13").unwrap(),
            ("gpt-4o-2024-05-13".into(), MatchKind::Exact)
        );
        assert_eq!(
            get("gpt-4o-mini-2024-07-18").unwrap(),
            ("gpt-4o-mini".into(), MatchKind::Snapshot)
        );
        assert_eq!(get("gpt-4.1-mini-2025-04-14").unwrap().0, "gpt-4.1-mini");
        assert_eq!(get("gpt-5-nano-2025-08-07").unwrap().0, "gpt-5-nano");
        assert_eq!(get("o4-mini-2025-04-16").unwrap().0, "o4-mini");
        assert_eq!(
            get("gpt-3.5-turbo-0125").unwrap(),
            ("gpt-3.5-turbo".into(), MatchKind::Snapshot)
        );
        assert_eq!(
            get("gpt-5-chat-latest").unwrap(),
            ("gpt-5".into(), MatchKind::Prefix)
        );
        assert_eq!(get("gpt-4.1-preview").unwrap().0, "gpt-4.1");
        // Variants priced differently never fall back to their family.
        for m in [
            "o3-deep-research",
            "gpt-4o-realtime-preview",
            "gpt-4o-audio-preview",
            "gpt-4o-search-preview",
            "gpt-5-codex",
            "gpt-4o-mini-tts",
            "o1-pro",
        ] {
            assert!(t.lookup(m).is_err(), "{m}");
        }
        assert_eq!(get("gpt-5-pro").unwrap().0, "gpt-5-pro");
        assert_eq!(get("o3-mini").unwrap().0, "o3-mini");
        // Unknown models: a reason, not a panic.
        let e = t.lookup("mistral-large").unwrap_err();
        assert!(e
            .to_string()
            .contains("no price known for model 'mistral-large'"));
        assert!(e.reason.contains("add a row"));
        let e = t.lookup("ft:gpt-4o-mini:acme::x").unwrap_err();
        assert!(e.reason.contains("fine-tuned"));
        assert!(t.lookup("gpt-4o5").is_err());
        // Odd input never panics (no byte slicing inside a character).
        for m in [
            "",
            "-",
            "--",
            "é-2024-01-01",
            "ééééééééééé",
            "gpt-4o-é024-08-06",
            "-0613",
            "x-١٢٣٤",
        ] {
            let _ = t.lookup(m);
            let _ = Encoding::for_model(m);
        }
        assert_eq!(strip_snapshot("gpt-4o-2024-08-06"), Some("gpt-4o"));
        assert_eq!(strip_snapshot("gpt-4-0613"), Some("gpt-4"));
        assert_eq!(strip_snapshot("gpt-4o"), None);
        assert_eq!(strip_snapshot("-2024-08-06"), None);
        // The brief's list is all there.
        for m in [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1",
            "gpt-4.1-mini",
            "gpt-4.1-nano",
            "o3",
            "o4-mini",
            "gpt-5",
            "gpt-5-mini",
            "gpt-5-nano",
        ] {
            assert_eq!(get(m).unwrap().1, MatchKind::Exact, "{m}");
        }
    }

    #[test]
    fn builtin_prices_are_half_of_standard() {
        let std = [
            ("gpt-4o", 2.50, 10.00),
            ("gpt-4o-mini", 0.15, 0.60),
            ("gpt-4.1", 2.00, 8.00),
            ("gpt-4.1-mini", 0.40, 1.60),
            ("gpt-4.1-nano", 0.10, 0.40),
            ("o3", 2.00, 8.00),
            ("o4-mini", 1.10, 4.40),
            ("gpt-5", 1.25, 10.00),
            ("gpt-5-mini", 0.25, 2.00),
            ("gpt-5-nano", 0.05, 0.40),
        ];
        let t = PriceTable::builtin();
        for (m, i, o) in std {
            let p = t.lookup(m).unwrap().price;
            assert!((p.input_per_mtok * 2.0 - i).abs() < 1e-9, "{m}");
            assert!((p.output_per_mtok * 2.0 - o).abs() < 1e-9, "{m}");
        }
    }

    #[test]
    fn overrides() {
        let t = PriceTable::builtin()
            .with_overrides([
                ModelPrice {
                    model: "GPT-4o".into(),
                    input_per_mtok: 9.0,
                    output_per_mtok: 9.5,
                },
                ModelPrice {
                    model: "my-model".into(),
                    input_per_mtok: 1.0,
                    output_per_mtok: 2.0,
                },
            ])
            .unwrap();
        let m = t.lookup("gpt-4o-2024-11-20").unwrap();
        assert_eq!(m.price.input_per_mtok, 9.0);
        assert_eq!(m.source, PriceSource::User);
        assert_eq!(t.lookup("my-model").unwrap().price.output_per_mtok, 2.0);
        assert_eq!(t.lookup("gpt-4.1").unwrap().source, PriceSource::BuiltIn);
        assert_eq!(t.rows().filter(|(r, _)| r.model == "gpt-4o").count(), 1);
        for (i, o) in [
            (-1.0, 1.0),
            (1.0, f64::NAN),
            (f64::INFINITY, 1.0),
            (2e6, 1.0),
        ] {
            let r = PriceTable::empty().with_overrides([ModelPrice {
                model: "x".into(),
                input_per_mtok: i,
                output_per_mtok: o,
            }]);
            assert!(matches!(r, Err(CostError::InvalidPrice { .. })), "{i} {o}");
        }
        assert!(PriceTable::empty()
            .with_overrides([price(1.0, 1.0)].map(|p| ModelPrice {
                model: " ".into(),
                ..p
            }))
            .is_err());
        assert!(PriceTable::empty().lookup("gpt-4o").is_err());
    }

    #[test]
    fn cost_rounding() {
        let p = price(0.075, 0.30); // gpt-4o-mini batch
                                    // 1M in + 1M out = 0.375 exactly.
        assert_eq!(estimate_cost(1_000_000, 1_000_000, &p), 0.375);
        // 1,234 in × 0.075 = 0.00009255 → 0.0001
        assert_eq!(estimate_cost(1_234, 0, &p), 0.0001);
        assert_eq!(estimate_cost(0, 0, &p), 0.0);
        // Exactly half a unit rounds up: 0.00005 USD = 500 tokens at 0.1 per 1M.
        assert_eq!(estimate_cost_ten_thousandths(500, 0, &price(0.1, 0.0)), 1);
        assert_eq!(estimate_cost_ten_thousandths(499, 0, &price(0.1, 0.0)), 0);
        // 2,000,000 in at 1.25 + 400,000 out at 5 = 2.5 + 2.0
        assert_eq!(estimate_cost(2_000_000, 400_000, &price(1.25, 5.0)), 4.5);
        // Huge counts do not overflow.
        assert!(estimate_cost(u64::MAX, u64::MAX, &price(1e6, 1e6)) > 1e9);
        let u = cost_usd_unrounded(1_234, 0, &p);
        assert!((u - 0.000_092_55).abs() < 1e-15);
    }

    #[test]
    fn output_tokens() {
        assert_eq!(expected_output_tokens(pl(), "gpt-4.1-mini", None), 400);
        assert_eq!(expected_output_tokens(pl(), "o4-mini", None), 1_400);
        assert_eq!(expected_output_tokens(pl(), "gpt-5-nano", None), 1_400);
        assert_eq!(expected_output_tokens(pl(), "gpt-5-chat-latest", None), 400);
        assert_eq!(expected_output_tokens(pl(), "gpt-4o", Some(312.2)), 313);
        assert_eq!(expected_output_tokens(pl(), "gpt-4o", Some(f64::NAN)), 400);
        assert_eq!(expected_output_tokens(pl(), "gpt-4o", Some(0.0)), 400);
        assert!(is_reasoning_model("o3-2025-04-16"));
        assert!(!is_reasoning_model("gpt-4o"));
    }

    #[test]
    fn token_estimates_name_their_method() {
        let exact = TokenEstimate::for_model("gpt-4o-mini");
        assert_eq!((exact.exact, exact.scale(1000)), (true, 1000));
        assert_eq!(exact.label(), "o200k_base (the model's tokenizer)");
        let approx = TokenEstimate::for_model("llama-3");
        assert_eq!((approx.exact, approx.scale(7)), (false, 7));
        assert!(approx.label().contains("approximation"));
        let claude = TokenEstimate::for_model("Claude-Haiku-4-5");
        assert_eq!(claude.encoding, Encoding::O200kBase);
        assert_eq!((claude.scale(1000), claude.scale(3)), (1250, 4));
        assert_eq!(
            claude.label(),
            "o200k_base x 1.25 (no public tokenizer for the model)"
        );
    }

    #[test]
    fn price_and_note_says_when_the_estimate_is_partial() {
        let prices = PriceTable::builtin();
        let (price, note) = price_and_note(&prices, "gpt-4o-mini");
        assert_eq!(note, None);
        let p = price.unwrap();
        assert_eq!(p.model, "gpt-4o-mini");
        assert_eq!(estimate_cost(0, 0, &p), 0.0);

        let (price, note) = price_and_note(&prices, "llama-3-70b");
        assert_eq!(price, None);
        let note = note.unwrap();
        assert!(
            note.contains("approximation") && note.contains("no price known"),
            "{note}"
        );

        // Claude: priced (dated snapshots too), tokens scaled from o200k_base.
        let (price, note) = price_and_note(&prices, "claude-haiku-4-5-20251001");
        let p = price.unwrap();
        assert_eq!(
            (p.model.as_str(), p.input_per_mtok, p.output_per_mtok),
            ("claude-haiku-4-5", 0.50, 2.50)
        );
        assert!(note.unwrap().contains("o200k_base x 1.25"));
        // A newer version is not priced as an older one (a user's row for the family
        // does not price the next version).
        let with_family = PriceTable::builtin()
            .with_overrides([ModelPrice {
                model: "claude-opus-4".into(),
                input_per_mtok: 7.5,
                output_per_mtok: 37.5,
            }])
            .unwrap();
        assert!(with_family.lookup("claude-opus-4-9").is_err());
        assert_eq!(
            with_family
                .lookup("claude-opus-4-20250514")
                .unwrap()
                .price
                .model,
            "claude-opus-4"
        );
        assert_eq!(
            price_and_note(&prices, "claude-opus-4-5")
                .0
                .unwrap()
                .input_per_mtok,
            2.50
        );
        assert_eq!(
            price_and_note(&prices, "claude-opus-4-1-20250805")
                .0
                .unwrap()
                .input_per_mtok,
            7.50
        );

        // A family match is priced as its closest model, and says so.
        let (price, note) = price_and_note(&prices, "gpt-5-chat-latest");
        assert_eq!(price.unwrap().model, "gpt-5");
        assert_eq!(
            note.as_deref(),
            Some("priced as 'gpt-5' (closest known model)")
        );
    }
}
