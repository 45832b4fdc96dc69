// Deterministic "realistic" GitHub-issue text for tokenizer tests and benchmarks.
//
// Shared by `src/cost.rs` tests and `examples/tokbench.rs` through `include!`, so it is
// not part of the crate's public API. The mix: English prose, fenced code blocks
// (YAML, Go, shell), log lines, non-ASCII scripts, emoji (with ZWJ sequences and skin
// tones), combining marks and whitespace oddities (tabs, CRLF, runs of spaces).

const WORDS: &[&str] = &[
    "the",
    "install",
    "fails",
    "when",
    "upgrading",
    "from",
    "version",
    "admin",
    "console",
    "cluster",
    "airgap",
    "bundle",
    "preflight",
    "check",
    "support",
    "customer",
    "license",
    "release",
    "channel",
    "registry",
    "image",
    "pull",
    "secret",
    "namespace",
    "pod",
    "node",
    "restart",
    "timeout",
    "after",
    "minutes",
    "error",
    "expected",
    "actual",
    "behavior",
    "steps",
    "reproduce",
    "we",
    "see",
    "that",
    "it's",
    "doesn't",
    "they're",
    "I've",
    "we'll",
    "Kubernetes",
    "KOTS",
    "kURL",
    "Helm",
    "chart",
    "values",
    "snapshot",
    "Velero",
    "backup",
    "restore",
    "storage",
    "class",
    "OpenEBS",
    "Rook",
    "Ceph",
    "Longhorn",
    "proxy",
    "TLS",
    "certificate",
    "ingress",
    "DNS",
    "resolve",
    "host",
    "port",
    "8800",
    "30000",
    "v1.109.3",
];

const CODE_BLOCKS: &[&str] = &[
    "```yaml\napiVersion: troubleshoot.sh/v1beta2\nkind: Preflight\nmetadata:\n  name: example\nspec:\n  analyzers:\n    - clusterVersion:\n        outcomes:\n          - fail:\n              when: \"< 1.26.0\"\n              message: The application requires Kubernetes 1.26.0 or later.\n```\n",
    "```go\nfunc (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {\n\tlog := r.Log.WithValues(\"app\", req.NamespacedName)\n\tif err := r.Get(ctx, req.NamespacedName, &app); err != nil {\n\t\treturn ctrl.Result{}, client.IgnoreNotFound(err)\n\t}\n\treturn ctrl.Result{RequeueAfter: 30 * time.Second}, nil\n}\n```\n",
    "```shell\n$ curl -sSL https://k8s.kurl.sh/latest | sudo bash -s airgap\n$ kubectl -n default get pods -o wide\nNAME                        READY   STATUS             RESTARTS   AGE\nkotsadm-7f9c6d8b5d-x2k4q    0/1     CrashLoopBackOff   12         37m\n```\n",
    "```\nTraceback (most recent call last):\n  File \"/usr/lib/python3/site.py\", line 42, in <module>\n    main()\nKeyError: 'spec'\n```\n",
];

const LOG_LINES: &[&str] = &[
    "2024-03-12T08:15:42.123Z\tINFO\tcontroller/app.go:214\treconciling\t{\"app\": \"my-app\", \"sequence\": 17}",
    "E0312 08:15:43.456789   12345 reflector.go:138] failed to list *v1.Secret: Unauthorized",
    "time=\"2024-03-12T08:15:44Z\" level=error msg=\"failed to pull image\" image=registry.example.com/app/api@sha256:3f1a9c0e5b7d2a4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5",
    "[WARN ] 10.96.0.10:53 - i/o timeout (attempt 3/5) \u{2014} retrying in 2s",
    "    at Object.<anonymous> (/app/node_modules/express/lib/router/index.js:284:7)",
];

const NON_ASCII: &[&str] = &[
    "Die Installation schlägt fehl, weil der Speicherplatz nicht ausreicht. Größe: 12 GiB.",
    "L'installation échoue après la mise à jour ; voir les journaux ci-dessous.",
    "インストールが失敗しました。ログを確認してください。",
    "安装在离线环境中失败，请检查镜像仓库配置。",
    "Установка не удалась после обновления до последней версии.",
    "설치가 실패했습니다. 네트워크 설정을 확인하세요.",
    "🚀 shipped! 👍🏽👍🏿 thanks 🙏 — but 🐛 found: 👨‍👩‍👧‍👦 family emoji ZWJ, flags 🇺🇸🇩🇪, keycap 1️⃣",
    "e\u{301}te\u{301} (combining acute) and \u{200b}zero-width\u{200b}space and \u{feff}BOM",
    "مرحبا بالعالم — תודה רבה — नमस्ते दुनिया — สวัสดีครับ",
];

const WHITESPACE: &[&str] = &[
    "line with trailing spaces   \r\nnext line after CRLF\r\n",
    "\t\tindented with tabs\n\n\n\nfour newlines above",
    "many     spaces     between     words",
    "   \n  \n \t \n",
    "1234567890123456789 0.000001 -42 1e10 0x1F 3.14159",
];

/// A tiny deterministic generator (xorshift64*), so samples are the same on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % (n as u64)) as usize
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// One sample of roughly `target_bytes` bytes.
pub fn sample(rng: &mut Rng, target_bytes: usize) -> String {
    let mut s = String::with_capacity(target_bytes + 512);
    while s.len() < target_bytes {
        match rng.below(10) {
            0..=3 => {
                let n = 8 + rng.below(40);
                for i in 0..n {
                    let w = rng.pick(WORDS);
                    if i == 0 {
                        let mut c = w.chars();
                        if let Some(f) = c.next() {
                            s.extend(f.to_uppercase());
                            s.push_str(c.as_str());
                        }
                    } else {
                        s.push_str(w);
                    }
                    s.push(if i + 1 == n { '.' } else { ' ' });
                    if i + 1 < n && rng.below(12) == 0 {
                        s.push_str(", ");
                    }
                }
                s.push_str(if rng.below(3) == 0 { "\n\n" } else { " " });
            }
            4 => s.push_str(rng.pick(CODE_BLOCKS)),
            5 | 6 => {
                for _ in 0..(1 + rng.below(6)) {
                    s.push_str(rng.pick(LOG_LINES));
                    s.push('\n');
                }
            }
            7 | 8 => {
                s.push_str(rng.pick(NON_ASCII));
                s.push(' ');
            }
            _ => s.push_str(rng.pick(WHITESPACE)),
        }
    }
    s
}

/// `n` samples with sizes spread between 50 bytes and `max_bytes`.
pub fn samples(seed: u64, n: usize, max_bytes: usize) -> Vec<String> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let size = 50 + rng.below(max_bytes.max(51) - 50);
            sample(&mut rng, size)
        })
        .collect()
}
