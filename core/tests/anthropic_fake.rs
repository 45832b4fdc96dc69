//! The Anthropic provider against the loopback fake (`fake_provider/`, Python standard
//! library only, started here with `python3 -m fake_provider`): real HTTP on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

#[path = "common/fake_http.rs"]
mod fake_http;

use ai_batch_core::anthropic::request::{write_request_line, AnthropicOptions};
use ai_batch_core::anthropic::{parse_result_line, reconcile, AnthropicProvider};
use ai_batch_core::lifecycle::JobStatus;
use ai_batch_core::processor::{processor_by_name, Processor};
use ai_batch_core::provider::{ClientOptions, JobLookup, Provider};
use ai_batch_core::providers::for_name;
use ai_batch_core::requests::{custom_id, RequestOptions};
use ai_batch_core::results::{parse_files_with, Outcome};
use serde_json::Value;

const KEY: &str = "sk-ant-fake-test-key-0123456789";

struct Fake {
    child: Child,
    root: String,
    dir: PathBuf,
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Fake {
    fn start() -> Fake {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let dir =
            std::env::temp_dir().join(format!("ai_batch_anthropic_it_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let port_file = dir.join("port");
        let child = Command::new("python3")
            .args([
                "-m",
                "fake_provider",
                "--port",
                "0",
                "--api-key",
                KEY,
                "--port-file",
            ])
            .arg(&port_file)
            .current_dir(repo)
            .spawn()
            .expect("python3 runs the fake provider");
        let t0 = Instant::now();
        let port = loop {
            if let Ok(p) = std::fs::read_to_string(&port_file) {
                break p.trim().to_string();
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "the fake did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Fake {
            child,
            root: format!("http://127.0.0.1:{port}"),
            dir,
        }
    }

    fn control(&self, path: &str, body: &str) -> Value {
        fake_http::exchange(&self.root, "POST", path, body)
    }

    fn state(&self) -> Value {
        fake_http::exchange(&self.root, "GET", "/_fake/state", "")
    }

    fn provider(&self, base: &str) -> AnthropicProvider {
        let opts = ClientOptions {
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            max_retries: 3,
            ..ClientOptions::default()
        };
        AnthropicProvider::new(base, KEY.to_string(), opts).unwrap()
    }

    /// A staged request file of `n` issues for `job`.
    fn requests(&self, job: &str, n: i64) -> PathBuf {
        let o =
            AnthropicOptions::from_request(&RequestOptions::new("claude-haiku-4-5"), pl()).unwrap();
        let mut out = Vec::new();
        let texts = [
            "kots admin console is blank",
            "support bundle hangs",
            "kurl join times out",
        ];
        for i in 1..=n {
            let text = texts[(i as usize) % texts.len()];
            write_request_line(&mut out, &custom_id(job, i), pl(), text, &o).unwrap();
        }
        let path = self.dir.join(format!("{job}.jsonl"));
        std::fs::write(&path, out).unwrap();
        path
    }
}

fn pl() -> &'static Processor {
    processor_by_name("product-labeling").unwrap()
}

fn outcomes(p: &dyn Provider, results_url: &str) -> Vec<(String, Outcome)> {
    let data = p.fetch_results(results_url, 1 << 30).unwrap();
    let parsed = parse_files_with(&[&data], pl(), parse_result_line);
    assert_eq!(parsed.unreadable_lines, 0);
    let mut v: Vec<_> = parsed
        .outcomes
        .into_iter()
        .map(|o| (o.custom_id, o.outcome))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn create(p: &dyn Provider, path: &Path, job: &str) -> ai_batch_core::provider::BatchView {
    let staged = p.stage_input(path, "ignored.jsonl").unwrap();
    let mut attempts = 0;
    let v = p
        .create(&staged.id, job, &mut || {
            attempts += 1;
            Ok(())
        })
        .unwrap();
    assert!(attempts >= 1);
    v
}

#[test]
fn anthropic_provider_against_the_fake() {
    let fake = Fake::start();
    let p: Box<dyn Provider> = for_name(
        "anthropic",
        &fake.root,
        KEY.into(),
        ClientOptions::default(),
    )
    .unwrap();

    // -- submit → poll → results, with the headers Anthropic wants
    let path = fake.requests("jobA", 4);
    let v = create(p.as_ref(), &path, "jobA");
    assert_eq!(
        (v.status.clone(), v.job_id.clone()),
        (JobStatus::InProgress, None)
    );
    assert_eq!(v.request_counts.unwrap().total, 4);
    let st = fake.state();
    assert_eq!(st["counts"]["creates_by_job"]["jobA"], 1);
    let log: Vec<&Value> = st["requests"].as_array().unwrap().iter().collect();
    let create_req = log.iter().find(|e| e["method"] == "POST").unwrap();
    assert_eq!(create_req["x_api_key"], true);
    assert_eq!(create_req["authorization"], false);
    assert_eq!(create_req["anthropic_version"], "2023-06-01");
    let v = p.poll(&v.id).unwrap();
    assert_eq!(
        (v.status.clone(), v.provider_status.as_str()),
        (JobStatus::Completed, "ended")
    );
    let url = v.output_file_id.clone().unwrap();
    let got = outcomes(p.as_ref(), &url);
    assert_eq!(got.len(), 4);
    for (cid, o) in &got {
        assert!(cid.starts_with("jobA-i"));
        let Outcome::Completed { result } = o else {
            panic!("{cid}: {o:?}")
        };
        assert!(result.contains("product::"), "{result}");
    }
    assert!(matches!(&got[1].1, Outcome::Completed { result } if result.contains("product::kurl")));

    // -- cancel: partial results, the rest canceled
    fake.control(
        "/_fake/config",
        r#"{"next_batch": {"hold_at": "in_progress"}}"#,
    );
    let v = create(p.as_ref(), &fake.requests("jobC", 4), "jobC");
    let c = p.cancel(&v.id).unwrap();
    assert_eq!(c.status, JobStatus::Cancelling);
    let v = p.poll(&v.id).unwrap();
    assert_eq!(v.status, JobStatus::Cancelled);
    let got = outcomes(p.as_ref(), v.output_file_id.as_deref().unwrap());
    let cancelled = got
        .iter()
        .filter(|(_, o)| {
            matches!(
                o,
                Outcome::Failed {
                    status: "cancelled",
                    ..
                }
            )
        })
        .count();
    assert_eq!(cancelled, 2);

    // -- errored and expired requests map onto item failures
    fake.control("/_fake/config", r#"{"next_batches": [{"outcome": "completed_mixed", "fail_every": 2, "fail_kinds": ["invalid_request", "server_error"]}, {"outcome": "expired", "partial_fraction": 0.25}]}"#);
    let v = p
        .poll(&create(p.as_ref(), &fake.requests("jobE", 4), "jobE").id)
        .unwrap();
    let codes: Vec<String> = outcomes(p.as_ref(), v.output_file_id.as_deref().unwrap())
        .into_iter()
        .filter_map(|(_, o)| match o {
            Outcome::Failed { code, .. } => Some(code),
            _ => None,
        })
        .collect();
    assert_eq!(codes, ["invalid_request", "api_error"]);
    let v = p
        .poll(&create(p.as_ref(), &fake.requests("jobX", 4), "jobX").id)
        .unwrap();
    assert_eq!(v.status, JobStatus::Expired);
    let expired = outcomes(p.as_ref(), v.output_file_id.as_deref().unwrap())
        .into_iter()
        .filter(|(_, o)| {
            matches!(
                o,
                Outcome::Failed {
                    status: "expired",
                    ..
                }
            )
        })
        .count();
    assert_eq!(expired, 3);

    // -- 429 on create is retried (Retry-After); 529 on a GET is retried; 529 on create is not
    let fp = fake.provider(&fake.root);
    fake.control("/_fake/config", r#"{"faults": [{"kind": "rate_limit", "method": "POST", "path": "/v1/messages/batches", "count": 2, "retry_after_ms": 20}, {"kind": "overloaded", "method": "GET", "count": 2}]}"#);
    let v = create(&fp, &fake.requests("jobR", 2), "jobR");
    assert_eq!(fp.poll(&v.id).unwrap().status, JobStatus::Completed);
    fake.control("/_fake/config", r#"{"fault": {"kind": "overloaded", "method": "POST", "path": "/v1/messages/batches", "retry_after": 0}}"#);
    let staged = fp.stage_input(&fake.requests("jobO", 2), "x").unwrap();
    let e = fp.create(&staged.id, "jobO", &mut || Ok(())).unwrap_err();
    assert_eq!(e.status(), Some(529));
    assert!(e.retryable() && e.may_have_reached_provider(), "{e}");
    assert!(e.to_string().contains("Anthropic"), "{e}");
    assert!(!e.to_string().contains(KEY));
    let st = fake.state();
    assert!(st["counts"]["creates_by_job"].get("jobO").is_none());
    // 4xx: not retried, not found is recognised
    let e = fp.poll("msgbatch_nope").unwrap_err();
    assert!(e.is_not_found() && !e.retryable(), "{e}");
    assert!(
        e.request_id().is_some_and(|r| r.starts_with("req_")),
        "{e:?}"
    );

    // -- a lost create response: found again by size, time and custom_ids, never created twice
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    fake.control("/_fake/config", r#"{"fault": {"kind": "reset", "method": "POST", "path": "/v1/messages/batches", "after_action": true}}"#);
    let lost_path = fake.requests("jobL", 3);
    let staged = fp.stage_input(&lost_path, "x").unwrap();
    let e = fp.create(&staged.id, "jobL", &mut || Ok(())).unwrap_err();
    assert!(e.may_have_reached_provider(), "{e}");
    let found = fp
        .find_for_job(&lookup("jobL", 3, t0))
        .unwrap()
        .expect("the lost batch is found");
    let st = fake.state();
    assert_eq!(st["counts"]["creates_by_job"]["jobL"], 1);
    assert_eq!(st["message_batches"][0]["id"], found.id.as_str());
    // A same-sized batch of another job created meanwhile makes two candidates: while
    // both run the answer is "wait"; once ended, the results tell which is ours.
    fake.control(
        "/_fake/config",
        r#"{"jobs": {"jobM": {"hold_at": "in_progress"}}}"#,
    );
    let other = create(&fp, &fake.requests("jobM", 3), "jobM");
    fake.control(
        &format!("/_fake/batches/{}", found.id),
        r#"{"hold_at": "in_progress"}"#,
    );
    let e = fp.find_for_job(&lookup("jobL", 3, t0)).unwrap_err();
    assert!(
        e.to_string().contains("could be job jobL's lost create"),
        "{e}"
    );
    fake.control(
        &format!("/_fake/batches/{}", found.id),
        r#"{"hold_at": null, "step": 1}"#,
    );
    fake.control(
        &format!("/_fake/batches/{}", other.id),
        r#"{"hold_at": null, "step": 1}"#,
    );
    let again = fp.find_for_job(&lookup("jobL", 3, t0)).unwrap().unwrap();
    assert_eq!(again.id, found.id);
    let m = fp.find_for_job(&lookup("jobM", 3, t0)).unwrap().unwrap();
    assert_eq!(m.id, other.id);
    // With the other job's batch known as owned, one candidate is left.
    let now = t0 + 5;
    let lost = reconcile::LostCreate {
        job_id: "jobL",
        requests: 3,
        sent_from: t0,
        land_by: now,
    };
    let only = fp
        .find_lost_create(&lost, &|id| id == other.id, now)
        .unwrap()
        .unwrap();
    assert_eq!(only.id, found.id);
    // Nothing fits: not created (a fresh create is then safe).
    let lost = reconcile::LostCreate {
        job_id: "jobZ",
        requests: 77,
        sent_from: t0,
        land_by: now,
    };
    assert!(fp
        .find_lost_create(&lost, &|_| false, now)
        .unwrap()
        .is_none());

    // -- a gateway path prefix and a relative results_url
    fake.control(
        "/_fake/config",
        r#"{"path_prefix": "/gw/anthropic", "relative_results_url": true}"#,
    );
    let gp = fake.provider(&format!("{}/gw/anthropic", fake.root));
    let v = gp
        .poll(&create(&gp, &fake.requests("jobG", 2), "jobG").id)
        .unwrap();
    let url = v.output_file_id.clone().unwrap();
    assert!(url.starts_with("/v1/messages/batches/"), "{url}");
    assert_eq!(outcomes(&gp, &url).len(), 2);
    // an absolute results_url elsewhere is refused before the key is sent
    let e = gp
        .fetch_results("http://127.0.0.2:1/v1/messages/batches/x/results", 100)
        .unwrap_err();
    assert!(e.to_string().contains("only sent there"), "{e}");
    fake.control(
        "/_fake/config",
        r#"{"path_prefix": "", "relative_results_url": false}"#,
    );

    // -- a provider echoing the key into its errored results: the bytes come back scrubbed
    fake.control(
        "/_fake/config",
        r#"{"next_batch": {"outcome": "all_failed", "echo_authorization": true}}"#,
    );
    let v = fp
        .poll(&create(&fp, &fake.requests("jobK", 2), "jobK").id)
        .unwrap();
    let data = fp
        .fetch_results(v.output_file_id.as_deref().unwrap(), 1 << 20)
        .unwrap();
    let text = String::from_utf8_lossy(&data);
    assert!(text.contains("x-api-key") && !text.contains(KEY), "{text}");

    // -- a bad request file is refused before anything is sent
    let bad = fake.dir.join("bad.jsonl");
    std::fs::write(&bad, "{}\n\n{}\n").unwrap();
    let before = fake.state()["counts"]["requests"].as_u64().unwrap();
    let e = fp.stage_input(&bad, "x").unwrap_err();
    assert!(e.to_string().contains("empty line"), "{e}");
    assert_eq!(fake.state()["counts"]["requests"].as_u64().unwrap(), before);
    // A wrong key: 401, not retried, the key never in the message.
    let wrong = AnthropicProvider::new(
        &fake.root,
        "sk-ant-wrong-key-123456".into(),
        ClientOptions::default(),
    )
    .unwrap();
    let e = wrong.poll("msgbatch_x").unwrap_err();
    assert_eq!(e.status(), Some(401));
    assert!(!e.to_string().contains("sk-ant-wrong-key-123456"), "{e}");
}

/// A lookup of a job of `requests` requests sent no earlier than `t0`, owning nothing
/// else.
fn lookup(job_id: &str, requests: u64, t0: i64) -> JobLookup<'_> {
    JobLookup {
        job_id,
        input_file_id: None,
        created_after: Some(t0),
        requests,
        owned: &|_| false,
    }
}
