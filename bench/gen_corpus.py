#!/usr/bin/env python3
"""Generates a realistic, deterministic GitHub-issue corpus into a fresh DuckDB file.

    python bench/gen_corpus.py --issues 10000 --out /tmp/corpus_10k.duckdb [--seed 1]

The tables are those of sql/schema.sql (issues, labels, comments). What the text looks
like, so that reading, token counting and JSONL building see what they see in real use:

- issue bodies: ~3 % NULL; otherwise log-normal lengths with a median of ~900
  characters (about three quarters between 0.5 and 5 KB), plus a long tail (1 %
  log-uniform 10k-65k characters, 0.2 % cut at exactly 65,536, the GitHub limit);
- issue-template markdown (headings, numbered steps, check boxes, links, tables),
  fenced code blocks (YAML, Go, shell, Python, JSON), log excerpts in several formats,
  Go stack traces, the odd base64 certificate or blob (a worst case for BPE), CRLF line
  ends in some issues;
- non-ASCII text (German, French, Spanish, Japanese, Chinese, Korean, Russian, Arabic,
  Hebrew, Hindi, Thai) and emoji, including ZWJ sequences, skin tones and flags;
- 0-30 comments per issue (20 % none, mean about 3), mostly short, some with logs;
- labels: about two thirds of the issues carry a product::X label, plus bug /
  type::... / priority::... labels.

Everything comes from one seeded `random.Random`, so a given (--issues, --seed) always
produces the same database. Text is assembled from pools of generated fragments (built
once per run) with per-issue variation, and inserted as column lists
with one INSERT ... SELECT unnest($lists) per table and chunk: 100,000 issues take well
under a minute.

Prints (and with --json writes) a summary: counts and total text MB.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "sql" / "schema.sql"
GITHUB_BODY_LIMIT = 65_536

# --------------------------------------------------------------------------- vocabulary

WORDS = """
the a an and or but if when after before while because so then also just still
again not only every some any each other this that these those it its we you they
our your their is are was were be been being have has had do does did can could should
would will may might must install installation installer upgrade upgrading upgraded
deploy deployment deployed release releases channel channels customer customers license
licenses vendor application app apps cluster clusters node nodes pod pods namespace
namespaces service services ingress secret secrets configmap config configuration
value values field fields option options setting settings version versions image images
registry registries airgap airgapped bundle bundles snapshot snapshots backup backups
restore restores velero preflight preflights check checks support collector collectors
analyzer analyzers redactor redactors admin console dashboard login password token tokens
certificate certificates tls proxy http https network networking dns timeout timeouts
error errors failure failures fails failed failing crash crashes crashed restart restarts
log logs output message messages warning warnings status state running pending ready
helm chart charts template templates manifest manifests kustomize kubectl kubernetes
containerd docker storage volume volumes pvc disk disks memory cpu resource resources
limit limits request requests quota quotas operator controller reconcile reconciler
sequence sequences rollback rollout migration migrations database postgres rqlite
minio s3 bucket buckets object objects api endpoint endpoints cli command commands flag
flags script scripts shell terminal environment variable variables user users team
teams permission permissions role roles rbac account accounts email link links page
pages button buttons screen screenshot browser chrome firefox safari window tab form
report reports issue issues bug bugs feature features request docs documentation guide
section example examples step steps expected actual behavior behaviour reproduce
workaround fix fixed patch hotfix regression latest previous new old same different
slow fast hang hangs stuck loop forever minutes hours seconds retry retries connection
refused reset denied unauthorized forbidden missing invalid unknown unexpected empty
large small upload download file files directory path disk full space permission ubuntu
rhel centos amazon linux windows macos arm64 amd64 gke eks aks openshift k3s k0s rke2
vm vms machine machines host hosts hostname port ports firewall selinux iptables kernel
module modules air gapped offline online mirror mirrored private public internal
external customer-facing production staging dev test testing tests ci pipeline github
actions workflow job jobs cron schedule scheduled daily weekly monthly metric metrics
prometheus grafana alert alerts monitoring instance instances telemetry report reporting
""".split()

NON_ASCII_SENTENCES = [
    "Nach dem Upgrade startet der Pod nicht mehr, und die Admin-Konsole zeigt „Fehler beim Abgleich“ an.",
    "Könnten Sie bitte prüfen, ob die Größenbeschränkung für Uploads geändert wurde? Grüße aus München.",
    "Après la mise à jour, l'installation échoue avec une erreur de délai d'attente ; voici les journaux.",
    "L'équipe a vérifié la configuration réseau : aucun problème côté pare-feu, déjà testé deux fois.",
    "Después de actualizar, la consola de administración muestra una página en blanco. ¿Alguna idea?",
    "A instalação falhou na etapa de verificação; não há espaço suficiente no nó principal.",
    "アップグレード後に管理コンソールにアクセスできなくなりました。ログを添付します。",
    "エアギャップ環境でのインストール時に、レジストリへのプッシュがタイムアウトします。",
    "升级之后，集群中的某些节点无法加入，错误信息如下。请帮忙看一下，谢谢！",
    "支持包生成失败，提示磁盘空间不足，但节点上还有很多空间。",
    "업그레이드 후 관리 콘솔에 접속할 수 없습니다. 로그를 첨부합니다.",
    "После обновления установка завершается ошибкой тайм-аута, логи ниже. Спасибо заранее!",
    "Проверка перед установкой (preflight) не проходит на узлах с ядром 3.10.",
    "بعد الترقية، فشل التثبيت مع خطأ في المهلة. السجلات مرفقة أدناه.",
    "לאחר השדרוג ההתקנה נכשלת עם שגיאת זמן קצוב, מצורפים יומנים.",
    "अपग्रेड के बाद इंस्टॉलेशन टाइमआउट त्रुटि के साथ विफल हो जाता है।",
    "หลังจากอัปเกรด การติดตั้งล้มเหลวด้วยข้อผิดพลาดหมดเวลา",
    "Ça marche enfin ✅ — merci beaucoup à toute l'équipe 🙏",
    "Übergrößen-Ümlaute ẞ and combining marks: e\u0301, a\u0308, n\u0303 (NFD forms).",
]
EMOJI = [
    "👍", "🎉", "🚀", "❤️", "😅", "🙏", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇩🇪", "🇯🇵", "✅", "❌",
    "⚠️", "🐛", "🔥", "💯", "🤔", "👀", "🧑🏿‍💻",
]

COMPONENTS = [
    "kotsadm", "kurl", "embedded-cluster", "support-bundle", "preflight", "replicated-sdk",
    "vendor portal", "download portal", "compatibility matrix", "admin console", "kots CLI",
    "snapshots", "velero", "registry", "ingress", "rqlite", "minio", "helm install",
    "airgap bundle", "license sync", "image pull", "troubleshoot", "cmx cluster", "docs",
]
TITLE_TEMPLATES = [
    "{c} fails after upgrade to {v}",
    "{c}: {w} {w} when {w} is {w}",
    "Cannot {w} {c} in airgapped environment",
    "[Bug] {c} crashes with {e}",
    "Feature request: {w} {w} for {c}",
    "{c} times out during {w}",
    "Docs: {c} {w} section is wrong",
    "{c} shows {e} on {os}",
    "Support bundle for {c} missing {w} logs",
    "{c} {w} {w} {w} since {v}",
    "Preflight check for {c} reports {e}",
    "Question: how do I {w} the {c}?",
]
ERRORS = [
    "context deadline exceeded", "connection refused", "x509: certificate signed by unknown authority",
    "no space left on device", "ImagePullBackOff", "CrashLoopBackOff", "OOMKilled",
    "permission denied", "i/o timeout", "EOF", "502 Bad Gateway", "unexpected status code 500",
    "failed to reconcile", "etcdserver: request timed out", "TLS handshake timeout",
    "unable to recognize \"\": no matches for kind", "invalid memory address or nil pointer dereference",
]
OSES = ["Ubuntu 22.04", "RHEL 8.9", "Amazon Linux 2", "CentOS 7", "Rocky Linux 9", "EKS 1.29", "GKE 1.30", "OpenShift 4.14"]
LOGINS = [f"{a}{b}" for a in ("dev", "ops", "sre", "cust", "eng", "qa", "support", "pm", "j", "m")
          for b in ("-alex", "_kim", "ana", "-bo", "chen", "-dee", "ravi", "-sam", "lu", "-max", "89", "-x")]
REPOS = [  # (repo, weight)
    ("kots", 30), ("kurl", 14), ("troubleshoot", 12), ("embedded-cluster", 12), ("replicated-sdk", 5),
    ("replicated-docs", 8), ("vendor-portal", 9), ("download-portal", 4), ("compatibility-matrix", 6),
]
PRODUCTS = ["kots", "troubleshoot", "kurl", "embedded-cluster", "sdk", "docs", "vendor",
            "downloadportal", "compatibility-matrix"]
OTHER_LABELS = [  # (name, color, description)
    ("bug", "d73a4a", "Something isn't working"),
    ("enhancement", "a2eeef", "New feature or request"),
    ("question", "d876e3", "Further information is requested"),
    ("documentation", "0075ca", "Improvements or additions to documentation"),
    ("needs-triage", "fbca04", None),
    ("type::bug", "b60205", "A defect"),
    ("type::feature", "0e8a16", "A new capability"),
    ("type::chore", "c5def5", None),
    ("priority::p1", "b60205", "Fix this week"),
    ("priority::p2", "d93f0b", "Fix this quarter"),
    ("priority::p3", "fef2c0", None),
    ("customer-reported", "5319e7", "Reported by a customer"),
    ("good first issue", "7057ff", "Good for newcomers"),
    ("airgap", "1d76db", None),
    ("regression", "e11d21", "Worked before"),
]
PRODUCT_COLOR = "6f42c1"


class FastRandom(random.Random):
    """random.Random with cheaper choice/randint (one random() call each; the stdlib
    versions go through _randbelow). Deterministic for a given seed."""

    def choice(self, seq):
        return seq[int(self.random() * len(seq))]

    def randint(self, a: int, b: int) -> int:
        return a + int(self.random() * (b - a + 1))

    def randrange(self, a: int, b: int | None = None) -> int:
        if b is None:
            a, b = 0, a
        return a + int(self.random() * (b - a))


class Pools:
    """Text fragments, generated once per run from the seed."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        w = WORDS
        choice, choices, randint = rng.choice, rng.choices, rng.randint

        def sentence() -> str:
            s = " ".join(choices(w, k=randint(5, 22)))
            if rng.random() < 0.15:
                s += " " + choice(ERRORS)
            if rng.random() < 0.08:
                s += " `" + choice(COMPONENTS).replace(" ", "-") + "`"
            return s[0].upper() + s[1:] + rng.choice(".....?!:")

        def paragraph() -> str:
            p = " ".join(sentence() for _ in range(randint(1, 5)))
            if rng.random() < 0.06:
                p += " " + choice(EMOJI)
            return p

        self.prose = [paragraph() for _ in range(4000)]
        self.intl = [
            " ".join(choices(NON_ASCII_SENTENCES, k=randint(1, 3)))
            + (" " + "".join(choices(EMOJI, k=randint(1, 3))) if rng.random() < 0.5 else "")
            for _ in range(400)
        ]
        self.log_lines = [self._log_line() for _ in range(8000)]
        self.code = [self._code_block() for _ in range(600)]
        self.stacks = [self._stack() for _ in range(150)]
        self.blobs = [self._blob() for _ in range(40)]
        self.steps = [
            "\n".join(f"{i}. {sentence()}" for i in range(1, randint(2, 6) + 1)) for _ in range(800)
        ]
        self.tables = [self._table() for _ in range(100)]

    def _ts(self) -> str:
        r = self.rng
        return (f"2024-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:"
                f"{r.randint(0, 59):02d}:{r.randint(0, 59):02d}.{r.randint(0, 999):03d}Z")

    def _log_line(self) -> str:
        r = self.rng
        k = r.randrange(6)
        pod = f"{r.choice(COMPONENTS).replace(' ', '-')}-{r.getrandbits(36):09x}-{r.getrandbits(20):05x}"
        msg = " ".join(r.choices(WORDS, k=r.randint(3, 12)))
        if k == 0:
            return (f"{self._ts()}\t{r.choice(['INFO', 'WARN', 'ERROR', 'DEBUG'])}\t{pod}\t{msg}\t"
                    f'{{"app": "{r.choice(REPOS)[0]}", "sequence": {r.randint(0, 400)}, '
                    f'"error": "{r.choice(ERRORS)}"}}')
        if k == 1:
            return (f'time="{self._ts()}" level={r.choice(["info", "warning", "error"])} '
                    f'msg="{msg}" component={pod} duration={r.random() * 30:.3f}s')
        if k == 2:
            return (f"E{r.randint(1, 12):02d}{r.randint(1, 28):02d} {r.randint(0, 23):02d}:"
                    f"{r.randint(0, 59):02d}:{r.randint(0, 59):02d}.{r.randint(0, 999999):06d}"
                    f"   {r.randint(1, 99999)} reflector.go:{r.randint(100, 999)}] "
                    f"k8s.io/client-go/informers/factory.go:150: Failed to watch *v1.Pod: {r.choice(ERRORS)}")
        if k == 3:
            return (f"[{self._ts()}] {r.choice(['INFO', 'ERROR', 'WARN'])} {msg} "
                    f"(attempt {r.randint(1, 10)}/10, node={r.choice(['10.0.', '172.16.', '192.168.'])}"
                    f"{r.randint(0, 255)}.{r.randint(1, 254)})")
        if k == 4:
            return (f"{pod}   {r.randint(0, 3)}/{r.randint(1, 3)}   "
                    f"{r.choice(['Running', 'Pending', 'CrashLoopBackOff', 'ImagePullBackOff', 'Completed'])}"
                    f"   {r.randint(0, 40)}   {r.randint(1, 59)}{r.choice('smhd')}")
        return f"    at {msg.replace(' ', '.')}({r.choice(['main', 'handler', 'store'])}.go:{r.randint(10, 2000)})"

    def _code_block(self) -> str:
        r = self.rng
        name = r.choice(COMPONENTS).replace(" ", "-")
        v = f"{r.randint(1, 2)}.{r.randint(0, 120)}.{r.randint(0, 12)}"
        k = r.randrange(6)
        if k == 0:
            body = (f"apiVersion: kots.io/v1beta1\nkind: Config\nmetadata:\n  name: {name}\nspec:\n  groups:\n"
                    + "".join(f"    - name: {r.choice(WORDS)}_{i}\n      title: {r.choice(WORDS).title()} {r.choice(WORDS)}\n"
                              f"      items:\n        - name: {r.choice(WORDS)}\n          type: {r.choice(['text', 'bool', 'password', 'select_one'])}\n"
                              f"          default: \"{r.choice(WORDS)}\"\n" for i in range(r.randint(1, 6))))
            return f"```yaml\n{body}```"
        if k == 1:
            return ("```go\nfunc (r *Reconciler) " + r.choice(WORDS).title() + "(ctx context.Context, app *types.App) error {\n"
                    f"\tif err := r.store.Get{r.choice(WORDS).title()}(ctx, app.ID); err != nil {{\n"
                    f"\t\treturn errors.Wrapf(err, \"failed to {r.choice(WORDS)} {r.choice(WORDS)} %s\", app.Slug)\n\t}}\n"
                    f"\tlogger.Infof(\"{' '.join(r.choices(WORDS, k=5))}\", {r.randint(1, 99)})\n\treturn nil\n}}\n```")
        if k == 2:
            return (f"```shell\n$ kubectl kots install {name} --namespace {r.choice(WORDS)} --license-file ./license.yaml\n"
                    + "\n".join(r.choices(self.log_lines, k=r.randint(2, 8)))
                    + f"\nError: {r.choice(ERRORS)}\n```")
        if k == 3:
            return (f"```python\nimport requests\n\nresp = requests.get(\"https://replicated.app/{name}/v{v}\", timeout={r.randint(1, 60)})\n"
                    f"for {r.choice(WORDS)} in resp.json()[\"{r.choice(WORDS)}\"]:\n    print({r.choice(WORDS)!r}, resp.status_code)\n```")
        if k == 4:
            obj = {r.choice(WORDS): {r.choice(WORDS): r.randint(0, 9999), "version": v, "ok": r.random() < 0.5}
                   for _ in range(r.randint(2, 8))}
            return "```json\n" + json.dumps(obj, indent=2) + "\n```"
        return (f"```\n$ curl -sSL https://k8s.kurl.sh/{name} | sudo bash -s airgap\n"
                + "\n".join(r.choices(self.log_lines, k=r.randint(3, 12))) + "\n```")

    def _stack(self) -> str:
        r = self.rng
        lines = [f"panic: runtime error: {r.choice(ERRORS)}", "", f"goroutine {r.randint(1, 900)} [running]:"]
        for _ in range(r.randint(4, 25)):
            pkg = r.choice(["kots/pkg/store", "kots/pkg/handlers", "kurl/pkg/installer", "troubleshoot/pkg/collect",
                            "embedded-cluster/pkg/addons", "sdk/pkg/heartbeat"])
            lines.append(f"github.com/replicatedhq/{pkg}.({r.choice(WORDS).title()}).{r.choice(WORDS).title()}(0xc000{r.getrandbits(24):06x}, 0x{r.getrandbits(16):x})")
            lines.append(f"\t/go/src/github.com/replicatedhq/{pkg}/{r.choice(WORDS)}.go:{r.randint(10, 3000)} +0x{r.getrandbits(12):x}")
        return "```\n" + "\n".join(lines) + "\n```"

    def _blob(self) -> str:
        r = self.rng
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        n = r.randint(8, 40)
        body = "\n".join("".join(r.choices(alphabet, k=64)) for _ in range(n))
        if r.random() < 0.5:
            return f"```\n-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n```"
        return f"```\nlicense: {''.join(r.choices(alphabet, k=64 * n))}\n```"

    def _table(self) -> str:
        r = self.rng
        rows = "\n".join(f"| {r.choice(OSES)} | v{r.randint(1, 2)}.{r.randint(0, 120)}.{r.randint(0, 9)} | "
                         f"{r.choice(['✅', '❌', 'works', 'fails'])} |" for _ in range(r.randint(2, 6)))
        return f"| OS | version | result |\n| --- | --- | --- |\n{rows}"


# --------------------------------------------------------------------------- one issue

class Generator:
    def __init__(self, seed: int):
        self.rng = FastRandom(seed)
        self.p = Pools(self.rng)

    def body_length(self) -> int | None:
        r = self.rng.random()
        if r < 0.03:
            return None
        if r < 0.032:
            return GITHUB_BODY_LIMIT  # pasted a huge log; GitHub cut it
        if r < 0.042:
            return int(math.exp(self.rng.uniform(math.log(10_000), math.log(GITHUB_BODY_LIMIT))))
        return max(20, min(GITHUB_BODY_LIMIT, int(self.rng.lognormvariate(math.log(900), 0.85))))

    def comment_length(self) -> int:
        if self.rng.random() < 0.02:
            return int(math.exp(self.rng.uniform(math.log(2_000), math.log(20_000))))
        return max(2, min(GITHUB_BODY_LIMIT, int(self.rng.lognormvariate(math.log(170), 0.9))))

    def filler(self, target: int, parts: list[str], have: int, logs_bias: float) -> int:
        """Appends fragments to `parts` until about `target` characters."""
        r, p = self.rng, self.p
        rnd, choice, choices = r.random, r.choice, r.choices
        while have < target:
            remaining = target - have
            x = rnd()
            if remaining > 4000 and x < logs_bias:
                k = min(600, remaining // 110 + 1)
                frag = "```\n" + "\n".join(choices(p.log_lines, k=k)) + "\n```"
            elif x < 0.42:
                frag = choice(p.prose)
            elif x < 0.55:
                frag = choice(p.code)
            elif x < 0.70:
                frag = "```\n" + "\n".join(choices(p.log_lines, k=r.randint(2, 15))) + "\n```"
            elif x < 0.78:
                frag = choice(p.intl)
            elif x < 0.84:
                frag = choice(p.steps)
            elif x < 0.89:
                frag = choice(p.stacks)
            elif x < 0.93:
                frag = choice(p.tables)
            elif x < 0.935:
                frag = choice(p.blobs)
            else:
                frag = f"See https://github.com/replicatedhq/{choice(REPOS)[0]}/issues/{r.randint(1, 5000)} " \
                       f"and {choice(p.prose)}"
            parts.append(frag)
            have += len(frag) + 2
        return have

    def body(self, n: int) -> str | None:
        target = self.body_length()
        if target is None:
            return None
        r, p = self.rng, self.p
        kind = r.random()
        parts: list[str] = []
        if kind < 0.6:
            parts += ["### Describe the bug", r.choice(p.prose), "### Steps to reproduce", r.choice(p.steps),
                      "### Expected behavior", r.choice(p.prose),
                      f"### Environment\n- {r.choice(COMPONENTS)} version: v{r.randint(1, 2)}.{r.randint(0, 120)}.{r.randint(0, 9)}\n"
                      f"- Kubernetes: v1.{r.randint(24, 31)}.{r.randint(0, 9)}\n- OS: {r.choice(OSES)}\n"
                      f"- [{'x' if r.random() < 0.5 else ' '}] airgapped"]
        elif kind < 0.8:
            parts += ["## Feature request", r.choice(p.prose), "## Why", r.choice(p.prose)]
        else:
            parts += [r.choice(p.prose)]
        if r.random() < 0.1:
            parts.append(r.choice(p.intl))
        have = sum(len(x) + 2 for x in parts)
        self.filler(target, parts, have, logs_bias=0.6)
        text = "\n\n".join(parts)[:target]
        if n % 23 == 0:
            text = text.replace("\n", "\r\n")[:target]
        return text

    def comment_body(self) -> str:
        target = self.comment_length()
        r, p = self.rng, self.p
        parts: list[str] = []
        x = r.random()
        if x < 0.05:
            parts.append(r.choice(EMOJI) + " " + r.choice(["+1", "same here", "Thanks!", "Any update?", "Fixed in latest, thanks"]))
        elif x < 0.12:
            parts.append(r.choice(p.intl))
        elif x < 0.2:
            parts.append("> " + r.choice(p.prose)[:200])
        have = sum(len(s) + 2 for s in parts)
        if have < target:
            self.filler(target, parts, have, logs_bias=0.8)
        return "\n\n".join(parts)[:max(target, 2)]

    def title(self) -> str:
        r = self.rng
        t = r.choice(TITLE_TEMPLATES).format(
            c=r.choice(COMPONENTS), w=r.choice(WORDS), e=r.choice(ERRORS), os=r.choice(OSES),
            v=f"v{r.randint(1, 2)}.{r.randint(0, 120)}.{r.randint(0, 9)}")
        t = t.replace("{w}", r.choice(WORDS))
        if r.random() < 0.03:
            t += " " + r.choice(EMOJI)
        elif r.random() < 0.03:
            t = r.choice(NON_ASCII_SENTENCES)[:80]
        return t

    def labels(self, repo: str) -> list[str]:
        r = self.rng
        out: list[str] = []
        if r.random() < 0.66:
            guess = {"kots": "kots", "kurl": "kurl", "troubleshoot": "troubleshoot", "embedded-cluster": "embedded-cluster",
                     "replicated-sdk": "sdk", "replicated-docs": "docs", "vendor-portal": "vendor",
                     "download-portal": "downloadportal", "compatibility-matrix": "compatibility-matrix"}[repo]
            out.append("product::" + (guess if r.random() < 0.8 else r.choice(PRODUCTS)))
            if r.random() < 0.1:
                extra = "product::" + r.choice(PRODUCTS)
                if extra not in out:
                    out.append(extra)
        for name, _c, _d in r.sample(OTHER_LABELS, k=r.choice([0, 1, 1, 2, 2, 3])):
            out.append(name)
        return out

    def n_comments(self) -> int:
        r = self.rng
        if r.random() < 0.2:
            return 0
        return min(30, 1 + int(r.expovariate(1 / 2.6)))


# --------------------------------------------------------------------------- writing

def generate(n_issues: int, out: Path, seed: int = 1, quiet: bool = False) -> dict:
    t0 = time.perf_counter()
    g = Generator(seed)
    r = g.rng
    repo_names = [x[0] for x in REPOS]
    repo_weights = [x[1] for x in REPOS]
    next_number = {name: 1 for name in repo_names}
    label_meta = {name: (c, d) for name, c, d in OTHER_LABELS}

    base_time = 1_577_836_800  # 2020-01-01
    comment_id = 0

    if out.exists():
        out.unlink()
    wal = Path(str(out) + ".wal")
    if wal.exists():
        wal.unlink()
    con = duckdb.connect(str(out))
    con.execute(SCHEMA.read_text())
    con.execute("BEGIN")
    # Rows are built as column lists and inserted with one INSERT ... SELECT unnest(...)
    # per chunk: the duckdb wheel converts the lists in C++, faster than CSV or Arrow-less
    # alternatives, and no temp files.
    issue_sql = """
        INSERT INTO issues (id, org, repo, number, title, body, state, author_login, author_id,
                            created_at, updated_at, imported_at)
        SELECT id, 'replicatedhq', repo, number, title, body, state, login, author_id,
               to_timestamp(c), to_timestamp(u), to_timestamp(u)
        FROM (SELECT unnest($1) AS id, unnest($2) AS repo, unnest($3) AS number, unnest($4) AS title,
                     unnest($5) AS body, unnest($6) AS state, unnest($7) AS login, unnest($8) AS author_id,
                     unnest($9) AS c, unnest($10) AS u)"""
    comment_sql = """
        INSERT INTO comments (id, issue_id, position, github_id, author_login, body, created_at, updated_at)
        SELECT id, issue_id, position, 2000000000 + id, login, body, to_timestamp(t), to_timestamp(t)
        FROM (SELECT unnest($1) AS id, unnest($2) AS issue_id, unnest($3) AS position, unnest($4) AS login,
                     unnest($5) AS body, unnest($6) AS t)"""
    label_sql = """
        INSERT INTO labels (issue_id, name, color, description)
        SELECT unnest($1), unnest($2), unnest($3), unnest($4)"""
    chunk = 5000
    for lo in range(1, n_issues + 1, chunk):
        I = [[] for _ in range(10)]
        C = [[] for _ in range(6)]
        L = [[] for _ in range(4)]
        for i in range(lo, min(lo + chunk, n_issues + 1)):
            repo = r.choices(repo_names, repo_weights)[0]
            number = next_number[repo]
            next_number[repo] += r.randint(1, 3)
            created = base_time + r.randrange(0, 5 * 365 * 86_400)
            updated = created + int(r.expovariate(1 / 2_000_000))
            login = r.choice(LOGINS)
            for col, v in zip(I, (i, repo, number, g.title(), g.body(i), "open" if r.random() < 0.35 else "closed",
                                  login, 1_000_000 + LOGINS.index(login), created, updated)):
                col.append(v)
            t = created
            for pos in range(g.n_comments()):
                comment_id += 1
                t += int(r.expovariate(1 / 200_000)) + 60
                for col, v in zip(C, (comment_id, i, pos, r.choice(LOGINS), g.comment_body(), t)):
                    col.append(v)
            for name in g.labels(repo):
                c, d = label_meta.get(name, (PRODUCT_COLOR, "Product: " + name.split("::", 1)[-1]))
                for col, v in zip(L, (i, name, c, d)):
                    col.append(v)
        con.execute(issue_sql, I)
        if C[0]:
            con.execute(comment_sql, C)
        if L[0]:
            con.execute(label_sql, L)
    t_gen = time.perf_counter() - t0
    # Keep the id sequences ahead of the explicit ids, as an import would.
    con.execute(f"SELECT max(nextval('issues_id_seq')) FROM range({n_issues})")
    con.execute(f"SELECT max(nextval('comments_id_seq')) FROM range({max(comment_id, 1)})")
    con.execute("COMMIT")
    stats = con.execute("""
        SELECT (SELECT count(*) FROM issues),
               (SELECT count(*) FROM comments),
               (SELECT count(*) FROM labels),
               (SELECT coalesce(sum(strlen(title)), 0) + coalesce(sum(strlen(body)), 0) FROM issues),
               (SELECT coalesce(sum(strlen(body)), 0) FROM comments),
               (SELECT count(*) FROM issues WHERE body IS NULL),
               (SELECT quantile_cont(length(body), [0.1, 0.5, 0.9, 0.99]) FROM issues),
               (SELECT max(length(body)) FROM issues),
               (SELECT count(*) FILTER (WHERE length(body) BETWEEN 500 AND 5000) / count(*) FROM issues),
               (SELECT count(DISTINCT issue_id) FROM labels WHERE name LIKE 'product::%'),
               (SELECT max(c) FROM (SELECT count(*) c FROM comments GROUP BY issue_id))
    """).fetchone()
    con.execute("CHECKPOINT")
    con.close()
    issues_n, comments_n, labels_n, issue_bytes, comment_bytes, null_bodies, q, max_len, share_05_5k, with_product, max_comments = stats
    summary = {
        "issues": issues_n,
        "comments": comments_n,
        "labels": labels_n,
        "seed": seed,
        "text_mb": round((issue_bytes + comment_bytes) / 1e6, 2),
        "issue_text_mb": round(issue_bytes / 1e6, 2),
        "comment_text_mb": round(comment_bytes / 1e6, 2),
        "null_bodies": null_bodies,
        "body_chars_p10_p50_p90_p99": [int(x) for x in q],
        "body_chars_max": max_len,
        "share_bodies_0.5_to_5k": round(float(share_05_5k), 3),
        "issues_with_product_label": with_product,
        "max_comments_per_issue": max_comments,
        "db_mb": round(out.stat().st_size / 1e6, 1),
        "generate_and_insert_seconds": round(t_gen, 2),
        "total_seconds": round(time.perf_counter() - t0, 2),
        "path": str(out),
    }
    if not quiet:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--issues", type=int, default=1000, help="number of issues (e.g. 1000, 10000, 50000, 100000)")
    ap.add_argument("--out", required=True, type=Path, help="DuckDB file to create (replaced if it exists)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, help="also write the summary here")
    a = ap.parse_args(argv)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    s = generate(a.issues, a.out.resolve(), a.seed)
    if a.json:
        a.json.write_text(json.dumps(s, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
