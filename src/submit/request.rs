//! A submit request as parsed from SQL ([`SubmitRequest`]), its checks, and the one
//! declaration of every `batch_submit` named parameter ([`PARAMS`]): the table
//! function registers and reads them from it, the scalar form takes its options from
//! it. No DuckDB types here.

use std::collections::HashMap;

use ai_batch_core::providers::Known;
use ai_batch_core::requests::RequestOptions;
use ai_batch_core::text::echo;

use super::error::SubmitError;

/// The default model when neither `model :=` nor `provider :=` is given.
pub const DEFAULT_MODEL: &str = ai_batch_core::providers::OPENAI.default_model;
/// The provider when neither `provider :=` nor the model names one.
pub const DEFAULT_PROVIDER: &str = ai_batch_core::providers::OPENAI.id;
/// Which issues to take.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// A read-only SQL query with an `id` column.
    Sql(String),
    /// Issue ids.
    Ids(Vec<i64>),
    /// `'*'`: every issue, narrowed by the filters. Only ever written out on purpose.
    All,
    /// The selection argument was NULL: a variable that is not set, a list from a query
    /// that found no rows. Selects nothing, and the result's message says so; it never
    /// widens to "every issue the filters allow" (that is `'*'`).
    Null,
}

/// Provider names a `provider:model` prefix may carry (gh-analysis's model form).
pub const KNOWN_PROVIDERS: [&str; 2] = ["openai", "anthropic"];

/// Splits `openai:gpt-4o-mini` into (`Some("openai")`, `gpt-4o-mini`); a name without a
/// known provider prefix comes back whole.
pub fn split_model_prefix(model: &str) -> (Option<String>, &str) {
    if let Some((pre, rest)) = model.split_once(':') {
        let pre = pre.trim().to_ascii_lowercase();
        if KNOWN_PROVIDERS.contains(&pre.as_str()) {
            return (Some(pre), rest.trim());
        }
    }
    (None, model)
}

/// The selection text that means "every issue, narrowed by the filters".
pub const ALL_ISSUES: &str = "*";

/// What the result message says about a NULL selection.
pub const NULL_SELECTION_NOTE: &str = "the selection is NULL (a variable that is not set, or a list from a query that found no rows), so nothing was selected; to take every issue the filters allow, pass '*' as the selection";

/// A submit request, as parsed from SQL.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmitRequest {
    pub processor: String,
    pub selection: Selection,
    pub model: String,
    /// Whether `model :=` was given (else the processor's default model, if any, is used).
    pub model_given: bool,
    pub provider: String,
    /// Whether the provider was named (`provider :=` or a `provider:` model prefix);
    /// else it follows the model (`claude-*` is Anthropic's).
    pub provider_given: bool,
    pub base_url: Option<String>,
    pub dry_run: bool,
    pub reprocess: bool,
    pub max_issues: Option<i64>,
    pub org: Option<String>,
    pub repo: Option<String>,
    pub state: Option<String>,
    pub missing_analysis: bool,
    /// Also take issues whose latest analysis by this processor is of an older version
    /// or older than the issue's `updated_at`.
    pub stale: bool,
    pub temperature: Option<f64>,
    pub max_output_tokens: Option<i64>,
    /// Sent as the provider's `reasoning_effort` (reasoning models only).
    pub reasoning_effort: Option<String>,
    /// Requests per job (tests and users who want smaller jobs); default 50,000.
    pub max_requests_per_job: Option<i64>,
    /// Set by `batch_retry`: the processor version of the job it retries (else the
    /// processor's current one).
    pub processor_version: Option<String>,
    /// The budget (USD): a submit whose estimate is above it writes and sends nothing.
    pub max_cost: Option<f64>,
    /// Set by `batch_retry`: the job this one retries.
    pub retry_of: Option<String>,
    /// Set by `batch_retry`: attempts each issue already had (the new item gets one more).
    pub prior_attempts: HashMap<i64, i64>,
}

impl SubmitRequest {
    /// A request with defaults for everything but processor and selection.
    pub fn new(processor: &str, selection: Selection) -> Self {
        SubmitRequest {
            processor: processor.to_string(),
            selection,
            model: DEFAULT_MODEL.to_string(),
            model_given: false,
            provider: DEFAULT_PROVIDER.to_string(),
            provider_given: false,
            base_url: None,
            dry_run: false,
            reprocess: false,
            max_issues: None,
            org: None,
            repo: None,
            state: None,
            missing_analysis: false,
            stale: false,
            temperature: None,
            max_output_tokens: None,
            reasoning_effort: None,
            max_requests_per_job: None,
            processor_version: None,
            max_cost: None,
            retry_of: None,
            prior_attempts: HashMap::new(),
        }
    }

    /// Applies `model :=` and `provider :=` (either may be absent). The model may carry
    /// the gh-analysis `provider:model` prefix (`openai:gpt-4o-mini`): the prefix picks the
    /// provider and is not part of the model name. Only known provider names count as a
    /// prefix, so OpenAI's fine-tuned names (`ft:gpt-4o-mini:org::id`) stay whole. A
    /// provider named without a model takes that provider's default model; a model
    /// without a named provider picks its provider (`claude-*`: Anthropic).
    pub fn set_model_and_provider(
        &mut self,
        model: Option<String>,
        provider: Option<String>,
    ) -> Result<(), SubmitError> {
        let provider = provider.map(|p| p.trim().to_ascii_lowercase());
        if let Some(m) = model {
            // Surrounding spaces are dropped ('  gpt-4o-mini ' is gpt-4o-mini): no model
            // name starts or ends with one.
            let m = m.trim();
            let (prefix, name) = split_model_prefix(m);
            if let (Some(pre), Some(given)) = (&prefix, &provider) {
                if pre != given {
                    return Err(SubmitError::Invalid(format!(
                        "model '{}' names provider {pre} but provider := '{}' (give one of them)",
                        echo(m),
                        echo(given)
                    )));
                }
            }
            if let Some(pre) = prefix {
                self.provider = pre;
                self.provider_given = true;
            }
            self.model = name.to_string();
            self.model_given = true;
        }
        if let Some(p) = provider {
            self.provider = p;
            self.provider_given = true;
        }
        if !self.provider_given {
            self.provider = ai_batch_core::providers::for_model(&self.model)
                .id
                .to_string();
        } else if !self.model_given {
            if let Some(k) = ai_batch_core::providers::known(&self.provider) {
                self.model = k.default_model.to_string();
            }
        }
        Ok(())
    }

    /// Whether a processor's default model may stand in for `model :=`: not when the
    /// request names a provider the model is not of (`provider := 'anthropic'` with a
    /// processor that defaults to an OpenAI model takes Anthropic's default model).
    pub fn takes_default_model(&self, model: &str) -> bool {
        !self.model_given
            && (!self.provider_given
                || ai_batch_core::providers::known(&self.provider)
                    .is_some_and(|k| (k.owns_model)(split_model_prefix(model).1)))
    }

    /// Checks what can be checked without the database (bind time).
    pub fn validate(&self) -> Result<(), SubmitError> {
        // Whether the processor exists is known only with the database (user-defined
        // processors): the submit looks it up before anything else.
        if self.processor.trim().is_empty() {
            return Err(SubmitError::Invalid(
                "processor must not be empty (e.g. 'product-labeling'; see batch_processors())"
                    .into(),
            ));
        }
        let Some(known) = ai_batch_core::providers::known(&self.provider) else {
            return Err(SubmitError::Invalid(format!(
                "unknown provider '{}' (supported: {})",
                echo(&self.provider),
                KNOWN_PROVIDERS.join(", ")
            )));
        };
        if !(known.owns_model)(&self.model) {
            return Err(SubmitError::Invalid(format!(
                "model '{}' is not one of {}'s models but the provider is {} (pass a model \
                 such as '{}', or provider := '{}')",
                echo(&self.model),
                known.name,
                known.id,
                known.default_model,
                ai_batch_core::providers::for_model(&self.model).id
            )));
        }
        self.request_options()?;
        if let Some(url) = &self.base_url {
            // Checked here too (not only when the client is built) so that a dry run
            // and the bind of EXPLAIN / DESCRIBE report it. The URL itself is not
            // echoed: whatever was pasted into it stays out of error messages.
            ai_batch_core::http::validate_base_url(url).map_err(|reason| {
                SubmitError::Invalid(format!(
                    "invalid base_url: {reason} (pass e.g. '{}'; plain http:// only for 127.0.0.1, localhost or [::1])",
                    self.known_provider().default_base_url
                ))
            })?;
        }
        if let Some(n) = self.max_issues {
            if n < 1 {
                return Err(SubmitError::Invalid(format!(
                    "max_issues must be at least 1, got {n} (leave it out for no cap)"
                )));
            }
        }
        if let Some(n) = self.max_requests_per_job {
            let max = known.format.limits().max_requests;
            if !(1..=max as i64).contains(&n) {
                return Err(SubmitError::Invalid(format!(
                    "max_requests_per_job must be between 1 and {max} ({}'s limit per batch), got {n}",
                    known.name
                )));
            }
        }
        if let Some(c) = self.max_cost {
            if !c.is_finite() || c < 0.0 {
                return Err(SubmitError::Invalid(format!(
                    "max_cost must be a cost in USD of 0 or more, got {c} (leave it out for no budget)"
                )));
            }
        }
        match &self.selection {
            Selection::Sql(s) if s.trim().is_empty() => {
                return Err(SubmitError::Invalid(
                    "the selection SQL is empty (pass a SELECT with an id column)".into(),
                ))
            }
            _ => {}
        }
        Ok(())
    }

    pub(crate) fn request_options(&self) -> Result<RequestOptions, SubmitError> {
        let max_output_tokens = match self.max_output_tokens {
            None => None,
            Some(n) if n >= 1 && n <= u32::MAX as i64 => Some(n as u32),
            Some(n) => {
                return Err(SubmitError::Invalid(format!(
                    "max_output_tokens must be a positive number of tokens, got {n}"
                )))
            }
        };
        let opts = RequestOptions {
            model: self.model.clone(),
            temperature: self.temperature,
            max_output_tokens,
            reasoning_effort: self.reasoning_effort.clone(),
        };
        self.known_provider()
            .format
            .check_options(&opts)
            .map_err(|e| SubmitError::Invalid(e.to_string()))?;
        Ok(opts)
    }

    /// The provider's settings (the provider is checked at bind to be one ai_batch
    /// speaks, so the fallback is never taken).
    pub(crate) fn known_provider(&self) -> &'static Known {
        ai_batch_core::providers::known(&self.provider).unwrap_or(&ai_batch_core::providers::OPENAI)
    }

    /// The base URL a request will use (recorded with the job).
    pub(crate) fn effective_base_url(&self) -> String {
        crate::settings::base_url_or_default(self.known_provider(), self.base_url.clone())
    }

    /// What is kept in `batch_jobs.selection_query`.
    pub(crate) fn selection_text(&self) -> String {
        let mut s = match &self.selection {
            Selection::Sql(q) => q.clone(),
            Selection::Ids(ids) => {
                let shown: Vec<String> = ids.iter().take(1000).map(|i| i.to_string()).collect();
                let more = if ids.len() > 1000 {
                    format!(", ... ({} ids in all)", ids.len())
                } else {
                    String::new()
                };
                format!("ids: [{}{more}]", shown.join(", "))
            }
            Selection::All => "all issues ('*')".to_string(),
            Selection::Null => "NULL (nothing selected)".to_string(),
        };
        let filters: Vec<String> = [
            ("org", &self.org),
            ("repo", &self.repo),
            ("state", &self.state),
        ]
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} = '{v}'")))
        .chain(
            self.missing_analysis
                .then(|| "missing_analysis".to_string()),
        )
        .chain(self.stale.then(|| "stale".to_string()))
        .chain(self.max_issues.map(|n| format!("max_issues = {n}")))
        .collect();
        if !filters.is_empty() {
            s.push_str(&format!(" -- filters: {}", filters.join(", ")));
        }
        s
    }
}

/// The SQL type of a named parameter (and of the matching scalar option).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// VARCHAR
    Text,
    /// BOOLEAN
    Bool,
    /// BIGINT
    Int,
    /// DOUBLE
    Float,
}

/// How a parameter's value goes into the request; the variant is its [`Kind`]. `None`:
/// not given, or NULL.
#[derive(Clone, Copy)]
pub(crate) enum Setter {
    Text(fn(&mut Draft, Option<String>)),
    Bool(fn(&mut Draft, Option<bool>)),
    Int(fn(&mut Draft, Option<i64>)),
    Float(fn(&mut Draft, Option<f64>)),
}

/// One named parameter of `batch_submit`: its name, its type and where it goes.
#[derive(Clone, Copy)]
pub(crate) struct Param {
    pub(crate) name: &'static str,
    pub(crate) set: Setter,
}

impl Param {
    const fn new(name: &'static str, set: Setter) -> Self {
        Param { name, set }
    }

    pub(crate) fn kind(&self) -> Kind {
        match self.set {
            Setter::Text(_) => Kind::Text,
            Setter::Bool(_) => Kind::Bool,
            Setter::Int(_) => Kind::Int,
            Setter::Float(_) => Kind::Float,
        }
    }

    /// Reads this parameter from `values` (typed by its kind) into `draft`.
    pub(crate) fn apply<V: NamedValues>(
        &self,
        draft: &mut Draft,
        values: &mut V,
    ) -> Result<(), V::Error> {
        match self.set {
            Setter::Text(f) => f(draft, values.text(self.name)?),
            Setter::Bool(f) => f(draft, values.boolean(self.name)?),
            Setter::Int(f) => f(draft, values.int(self.name)?),
            Setter::Float(f) => f(draft, values.float(self.name)?),
        }
        Ok(())
    }
}

/// Where named values come from: the table function's bind, or one scalar option.
/// Each method reads the value of `name` as that type; `Ok(None)`: not given, or NULL.
pub(crate) trait NamedValues {
    type Error;
    fn text(&mut self, name: &str) -> Result<Option<String>, Self::Error>;
    fn boolean(&mut self, name: &str) -> Result<Option<bool>, Self::Error>;
    fn int(&mut self, name: &str) -> Result<Option<i64>, Self::Error>;
    fn float(&mut self, name: &str) -> Result<Option<f64>, Self::Error>;
}

/// Reads every parameter of [`PARAMS`] from `values` into `draft`: the table function's
/// bind.
pub(crate) fn read_all<V: NamedValues>(draft: &mut Draft, values: &mut V) -> Result<(), V::Error> {
    for p in &PARAMS {
        p.apply(draft, values)?;
    }
    Ok(())
}

/// A request being read from named values: `model` and `provider` are applied together
/// at the end (the `provider:model` form), by [`Draft::finish`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Draft {
    req: SubmitRequest,
    model: Option<String>,
    provider: Option<String>,
}

impl Draft {
    pub(crate) fn new(processor: &str, selection: Selection) -> Self {
        Draft {
            req: SubmitRequest::new(processor, selection),
            model: None,
            provider: None,
        }
    }

    /// Applies model and provider, then checks the request (see
    /// [`SubmitRequest::validate`]).
    pub(crate) fn finish(self) -> Result<SubmitRequest, SubmitError> {
        let mut req = self.req;
        req.set_model_and_provider(self.model, self.provider)?;
        req.validate()?;
        Ok(req)
    }
}

/// Every named parameter of `batch_submit`, declared once: the table function's
/// registration and bind, and the scalar form's options, all come from here.
pub(crate) const PARAMS: [Param; 16] = [
    Param::new("model", Setter::Text(|d, v| d.model = v)),
    Param::new("provider", Setter::Text(|d, v| d.provider = v)),
    Param::new("base_url", Setter::Text(|d, v| d.req.base_url = v)),
    Param::new(
        "dry_run",
        Setter::Bool(|d, v| d.req.dry_run = v.unwrap_or(false)),
    ),
    Param::new(
        "reprocess",
        Setter::Bool(|d, v| d.req.reprocess = v.unwrap_or(false)),
    ),
    Param::new("max_issues", Setter::Int(|d, v| d.req.max_issues = v)),
    Param::new("org", Setter::Text(|d, v| d.req.org = v)),
    Param::new("repo", Setter::Text(|d, v| d.req.repo = v)),
    Param::new("state", Setter::Text(|d, v| d.req.state = v)),
    Param::new(
        "missing_analysis",
        Setter::Bool(|d, v| d.req.missing_analysis = v.unwrap_or(false)),
    ),
    Param::new(
        "stale",
        Setter::Bool(|d, v| d.req.stale = v.unwrap_or(false)),
    ),
    Param::new("temperature", Setter::Float(|d, v| d.req.temperature = v)),
    Param::new(
        "max_output_tokens",
        Setter::Int(|d, v| d.req.max_output_tokens = v),
    ),
    Param::new(
        "max_requests_per_job",
        Setter::Int(|d, v| d.req.max_requests_per_job = v),
    ),
    Param::new(
        "reasoning_effort",
        Setter::Text(|d, v| d.req.reasoning_effort = v.map(|e| e.trim().to_string())),
    ),
    Param::new("max_cost", Setter::Float(|d, v| d.req.max_cost = v)),
];

/// The parameter named `name` (as written: callers lower-case option keys).
pub(crate) fn param(name: &str) -> Option<&'static Param> {
    PARAMS.iter().find(|p| p.name == name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn validation_messages() {
        // An unknown name is refused by the submit, which reads the user-defined ones
        // (test/sql/batch_submit.test); here only an empty one.
        let mut r = SubmitRequest::new(" ", Selection::Ids(vec![1]));
        assert!(r
            .validate()
            .unwrap_err()
            .to_string()
            .contains("processor must not be empty"));
        r.processor = "product-labeling".into();
        r.validate().unwrap();
        // '*' is explicit: it needs no filter.
        r.selection = Selection::All;
        r.validate().unwrap();
        r.selection = Selection::Null;
        r.validate().unwrap();
        r.org = Some("acme".into());
        r.validate().unwrap();
        r.max_issues = Some(0);
        assert!(r.validate().unwrap_err().to_string().contains("max_issues"));
        r.max_issues = None;
        r.temperature = Some(5.0);
        assert!(r.validate().is_err());
        r.temperature = None;
        r.max_cost = Some(-1.0);
        assert!(r
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_cost must be"));
        r.max_cost = Some(f64::NAN);
        assert!(r.validate().is_err());
        r.max_cost = Some(0.0);
        r.validate().unwrap();
        r.max_cost = None;
        r.provider = "acme-ai".into();
        assert!(r.validate().unwrap_err().to_string().contains("acme-ai"));
    }

    #[test]
    fn model_prefix_picks_the_provider() {
        let mut r = SubmitRequest::new("product-labeling", Selection::All);
        r.set_model_and_provider(Some("openai:gpt-4o-mini".into()), None)
            .unwrap();
        assert_eq!(
            (r.model.as_str(), r.provider.as_str()),
            ("gpt-4o-mini", "openai")
        );
        r.validate().unwrap();
        // Fine-tuned names keep their colons.
        r.set_model_and_provider(Some("ft:gpt-4o-mini:acme::abc".into()), None)
            .unwrap();
        assert_eq!(r.model, "ft:gpt-4o-mini:acme::abc");
        r.set_model_and_provider(Some("gpt-4.1".into()), Some(" OpenAI ".into()))
            .unwrap();
        assert_eq!(
            (r.model.as_str(), r.provider.as_str()),
            ("gpt-4.1", "openai")
        );
        let mut a = SubmitRequest::new("product-labeling", Selection::All);
        a.set_model_and_provider(Some("anthropic:claude-sonnet-4-5".into()), None)
            .unwrap();
        assert_eq!(
            (a.model.as_str(), a.provider.as_str()),
            ("claude-sonnet-4-5", "anthropic")
        );
        a.validate().unwrap();
        let clash = a
            .set_model_and_provider(Some("anthropic:x".into()), Some("openai".into()))
            .unwrap_err()
            .to_string();
        assert!(clash.contains("names provider anthropic"), "{clash}");
    }

    #[test]
    fn the_model_picks_the_provider_and_the_provider_the_default_model() {
        let set = |m: Option<&str>, p: Option<&str>| {
            let mut r = SubmitRequest::new("product-labeling", Selection::All);
            r.set_model_and_provider(m.map(Into::into), p.map(Into::into))
                .map(|_| r)
        };
        let r = set(Some("claude-haiku-4-5"), None).unwrap();
        assert_eq!(r.provider, "anthropic");
        r.validate().unwrap();
        let r = set(None, Some("Anthropic")).unwrap();
        assert_eq!(
            (r.model.as_str(), r.provider.as_str()),
            ("claude-haiku-4-5", "anthropic")
        );
        let r = set(None, None).unwrap();
        assert_eq!(
            (r.model.as_str(), r.provider.as_str()),
            (DEFAULT_MODEL, "openai")
        );
        // A model that is not the named provider's is refused, naming both.
        for (m, p) in [("gpt-4o-mini", "anthropic"), ("claude-haiku-4-5", "openai")] {
            let msg = set(Some(m), Some(p))
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(msg.contains(m) && msg.contains(p), "{msg}");
        }
        // Options Anthropic has no equivalent for are refused at bind.
        let mut r = set(Some("claude-haiku-4-5"), None).unwrap();
        r.temperature = Some(1.5);
        let msg = r.validate().unwrap_err().to_string();
        assert!(msg.contains("0 to 1"), "{msg}");
        r.temperature = Some(0.5);
        r.reasoning_effort = Some("minimal".into());
        let msg = r.validate().unwrap_err().to_string();
        assert!(msg.contains("no Anthropic equivalent"), "{msg}");
        r.reasoning_effort = Some("high".into());
        r.validate().unwrap();
        let msg = set(Some("claude-3-haiku-20240307"), None)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(msg.contains("structured outputs"), "{msg}");
        // A processor's default model stands in only when it fits the named provider.
        let r = set(None, Some("anthropic")).unwrap();
        assert!(!r.takes_default_model("gpt-4.1-mini"));
        assert!(r.takes_default_model("claude-sonnet-4-5"));
        assert!(set(None, None).unwrap().takes_default_model("gpt-4.1-mini"));
        assert!(!set(Some("gpt-4o"), None)
            .unwrap()
            .takes_default_model("gpt-4.1-mini"));
    }

    #[test]
    fn reasoning_effort_needs_a_reasoning_model() {
        let mut r = SubmitRequest::new("product-labeling", Selection::All);
        r.reasoning_effort = Some("high".into());
        let msg = r.validate().unwrap_err().to_string();
        assert!(msg.contains("only for reasoning models"), "{msg}");
        r.model = "o4-mini".into();
        r.validate().unwrap();
        r.reasoning_effort = Some("turbo".into());
        assert!(r.validate().unwrap_err().to_string().contains("turbo"));
    }
}
